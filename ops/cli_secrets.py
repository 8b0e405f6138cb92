"""``meterly secrets``: Meterly's own keys (``processors.runtime.keyring``).

    meterly secrets list                      the key ids of each purpose, newest first
    meterly secrets rotate links|sessions|secrets
    meterly secrets retire PURPOSE KEY_ID
    meterly secrets export                    METERLY_*_KEYS lines for other hosts (secret!)

Rotate, then restart Meterly's processes: the new key signs or seals from then on, the old
ones still verify or open what they made. Retire an old key once nothing it made is in use:
a links key after 7 days, a sessions key after 12 hours, a secrets key only once every
webhook endpoint has had its signing secret rotated since (until then the dispatcher cannot
open the endpoint's secret, and its deliveries fail and are retried, then dead-lettered).
"""

from __future__ import annotations

import argparse
from typing import Any

from ops.output import say
from processors.runtime import keyring
from processors.runtime.settings import get_settings


def cmd_secrets(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.action == "list":
        for purpose in keyring.PURPOSES:
            keys = keyring.load(settings, purpose)
            where = (keyring.SETTINGS[purpose] if (getattr(settings, _field(purpose)) or '').strip()
                     else str(keyring.keyring_file(settings)))
            print(f"{purpose:<9} {', '.join(i for i, _ in keys.keys)}  ({where})")
        return 0
    if args.action == "export":
        for purpose in keyring.PURPOSES:
            print(f"{keyring.SETTINGS[purpose]}={keyring.load(settings, purpose).text()}")
        return 0
    try:
        if args.action == "rotate":
            keys = keyring.rotate(settings, args.purpose)
            say(f"{args.purpose}: {keys.current[0]} is the newest key; restart Meterly's "
                "processes to use it")
        else:
            keys = keyring.retire(settings, args.purpose, args.key_id)
            say(f"{args.purpose}: {args.key_id} retired; keys now "
                f"{', '.join(i for i, _ in keys.keys)}")
    except ValueError as exc:
        say(str(exc))
        return 1
    return 0


def _field(purpose: str) -> str:
    return {"links": "link_keys", "sessions": "session_keys", "secrets": "secret_keys",
            "records": "record_keys"}[purpose]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("secrets", help="Meterly's own keys: list, rotate, retire, export")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list").set_defaults(func=cmd_secrets)
    actions.add_parser("export").set_defaults(func=cmd_secrets)
    rotate = actions.add_parser("rotate")
    rotate.add_argument("purpose", choices=keyring.PURPOSES)
    rotate.set_defaults(func=cmd_secrets)
    retire = actions.add_parser("retire")
    retire.add_argument("purpose", choices=keyring.PURPOSES)
    retire.add_argument("key_id")
    retire.set_defaults(func=cmd_secrets)
