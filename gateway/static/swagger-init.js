// Starts Swagger UI on /docs from the gateway's own copy of it (no CDN, no inline script).
"use strict";
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // The default validator badge is an image from validator.swagger.io.
    validatorUrl: null,
  });
});
