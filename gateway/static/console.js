// The console's only script, served from its own origin (the pages' Content-Security-Policy
// allows no inline script): copy buttons and the "try it" panel.
"use strict";

async function usageOf(key, meter) {
  const answer = await fetch("/v1/usage", {headers: {Authorization: "Bearer " + key}});
  if (!answer.ok) return null;
  const usage = await answer.json();
  const found = usage.meters.find((m) => m.meter === meter);
  return found ? found.count : 0;
}

async function tryIt() {
  const key = document.getElementById("try-key").value.trim();
  const meter = document.getElementById("try-meter").value.trim();
  const status = document.getElementById("try-status");
  document.getElementById("try-meter-name").textContent = meter;
  const before = await usageOf(key, meter);
  const call = await fetch("/v1/resources/" + encodeURIComponent(meter),
                           {headers: {Authorization: "Bearer " + key}});
  if (!call.ok) { status.textContent = "call refused: " + call.status; return; }
  status.textContent = "called; waiting for the counter…";
  for (let i = 0; i < 40; i++) {
    const now = await usageOf(key, meter);
    document.getElementById("try-count").textContent = now;
    if (now !== null && now > (before || 0)) { status.textContent = "counted"; return; }
    await new Promise((wake) => setTimeout(wake, 250));
  }
  status.textContent = "not counted yet";
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => navigator.clipboard.writeText(
      document.getElementById(button.dataset.copy).textContent));
  }
  const call = document.getElementById("try-call");
  if (call) call.addEventListener("click", tryIt);
});
