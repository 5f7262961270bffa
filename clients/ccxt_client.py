"""Drives the real, unchanged ccxt (Python) binance client through a gateway.

Only configuration changes: every API base URL points at the gateway, market loading asks
for spot only, and currencies come from the markets (fetchCurrencies is a signed wallet
call). Prints one JSON line per library call: {call, ok, error_class, error_message, result}.

    python ccxt_client.py --base http://127.0.0.1:8443 --key K --secret S \
        --key-type hmac --scenario startup,balance,order,cancel,withdraw,listen_key
"""

import ccxt

from common import ORDER, WITHDRAW, args, credential, run


def exchange(a):
    options = {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "adjustForTimeDifference": False,
    }
    config = {"options": options, "enableRateLimit": False, "timeout": 10000}
    if a.key:
        config["apiKey"] = a.key
        # ccxt takes an Ed25519 or RSA private key as the secret, PEM text included: it
        # signs with the key type the PEM holds.
        config["secret"] = credential(a)
    ex = ccxt.binance(config)
    api = ex.urls["api"]
    for name, url in list(api.items()):
        if isinstance(url, str) and url.startswith("https://"):
            # https://api.binance.com/api/v3 -> <base>/api/v3
            api[name] = a.base.rstrip("/") + "/" + url.split("/", 3)[3]
    return ex


def main():
    a = args("ccxt (Python)")
    ex = exchange(a)
    state = {}

    def startup():
        yield "ping", lambda: ex.public_get_ping()
        yield "fetch_time", ex.fetch_time
        yield "load_markets", lambda: sorted(ex.load_markets().keys())

    def balance():
        yield "fetch_balance", lambda: {
            k: v for k, v in ex.fetch_balance()["total"].items() if v
        }

    def order():
        def place():
            o = ex.create_order(
                "BTC/USDT", "limit", ORDER["side"], ORDER["quantity"], ORDER["price"]
            )
            state["id"] = o["id"]
            return {"id": o["id"], "status": o["status"], "symbol": o["symbol"]}

        yield "create_order", place

    def cancel():
        def do():
            o = ex.cancel_order(state.get("id", ORDER["order_id"]), "BTC/USDT")
            return {"id": o["id"], "status": o["status"]}

        yield "cancel_order", do

    def withdraw():
        yield "withdraw", lambda: ex.withdraw(
            WITHDRAW["coin"], WITHDRAW["amount"], WITHDRAW["address"]
        )["id"]

    def listen_key():
        yield "public_post_userdatastream", lambda: ex.public_post_userdatastream()[
            "listenKey"
        ]

    run(
        a,
        {
            "startup": startup,
            "balance": balance,
            "order": order,
            "cancel": cancel,
            "withdraw": withdraw,
            "listen_key": listen_key,
        },
    )


if __name__ == "__main__":
    main()
