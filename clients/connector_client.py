"""Drives the exchange's own Python connector (binance-connector, unchanged) through a gateway.

Only configuration changes: `base_url` is the gateway. Ed25519 and RSA keys are given as
`private_key` (the PEM text), the connector's documented way. Prints one JSON line per
library call: {call, ok, error_class, error_message, result}.

    python connector_client.py --base http://127.0.0.1:8443 --key K --private-key ed.pem \
        --key-type ed25519 --scenario startup,balance,order,cancel
"""

from binance.spot import Spot

from common import ORDER, WITHDRAW, args, credential, run


def client(a):
    if not a.key:
        return Spot(base_url=a.base, timeout=10)
    if a.key_type == "hmac":
        return Spot(api_key=a.key, api_secret=credential(a), base_url=a.base, timeout=10)
    return Spot(api_key=a.key, private_key=credential(a), base_url=a.base, timeout=10)


def main():
    a = args("binance-connector (Python)")
    spot = client(a)
    state = {}

    def startup():
        yield "ping", spot.ping
        yield "time", lambda: spot.time()["serverTime"]
        yield "exchange_info", lambda: [s["symbol"] for s in spot.exchange_info()["symbols"]]

    def balance():
        yield "account", lambda: {
            b["asset"]: b["free"] for b in spot.account()["balances"] if float(b["free"])
        }

    def order():
        def place():
            o = spot.new_order(
                symbol=ORDER["symbol"],
                side=ORDER["side"].upper(),
                type="LIMIT",
                timeInForce="GTC",
                quantity=ORDER["quantity"],
                price=ORDER["price"],
            )
            state["id"] = o["orderId"]
            return {"id": o["orderId"], "status": o["status"], "symbol": o["symbol"]}

        yield "new_order", place

    def cancel():
        def do():
            o = spot.cancel_order(
                symbol=ORDER["symbol"], orderId=state.get("id", ORDER["order_id"])
            )
            return {"id": o["orderId"], "status": o["status"]}

        yield "cancel_order", do

    def withdraw():
        yield "withdraw", lambda: spot.withdraw(
            coin=WITHDRAW["coin"], amount=WITHDRAW["amount"], address=WITHDRAW["address"]
        )["id"]

    def listen_key():
        yield "new_listen_key", lambda: spot.new_listen_key()["listenKey"]

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
