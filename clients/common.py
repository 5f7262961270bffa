"""What the Python drivers share: arguments, the fixed order and withdrawal, and one JSON
line per library call on standard output."""

import argparse
import json
import sys
import traceback

# What every driver trades and withdraws, so the test knows what the upstream must see.
ORDER = {
    "symbol": "BTCUSDT",
    "side": "buy",
    "quantity": 0.001,
    "price": 20000,
    "order_id": 28,
}
WITHDRAW = {
    "coin": "BTC",
    "amount": 0.01,
    "address": "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
}


def args(library):
    p = argparse.ArgumentParser(description=f"Drive {library} through a gateway")
    p.add_argument("--base", required=True, help="gateway base URL, http://host:port")
    p.add_argument("--key", default="", help="API key (empty: public calls only)")
    p.add_argument("--secret", default="", help="HMAC secret (key type hmac)")
    p.add_argument("--private-key", default="", help="PEM file (key type ed25519 or rsa)")
    p.add_argument("--key-type", default="hmac", choices=["hmac", "ed25519", "rsa"])
    p.add_argument(
        "--scenario",
        required=True,
        help="comma-separated: startup,balance,order,cancel,withdraw,listen_key",
    )
    return p.parse_args()


def credential(a):
    """The HMAC secret, or the PEM text of the Ed25519/RSA private key."""
    if a.key_type == "hmac":
        return a.secret
    with open(a.private_key, encoding="utf-8") as f:
        return f.read()


def emit(call, ok, result=None, error=None):
    line = {"call": call, "ok": ok, "result": result}
    if error is None:
        line.update(error_class=None, error_message=None)
    else:
        line.update(
            error_class=type(error).__name__,
            # every class the exception is an instance of, so a test can ask "is this an
            # AuthenticationError" the way a trading program would catch it
            error_classes=[c.__name__ for c in type(error).__mro__],
            error_message=str(error),
        )
        for attr in ("status_code", "error_code"):
            if hasattr(error, attr):
                line[attr] = getattr(error, attr)
    print(json.dumps(line, default=str), flush=True)


def run(a, scenarios):
    for name in a.scenario.split(","):
        if name not in scenarios:
            emit(name, False, error=ValueError(f"unknown scenario {name}"))
            sys.exit(2)
        for call, do in scenarios[name]():
            try:
                emit(call, True, result=do())
            except Exception as e:  # noqa: BLE001 - reported, the test judges it
                emit(call, False, error=e)
                traceback.print_exc(file=sys.stderr)
