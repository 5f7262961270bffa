// Drives the real, unchanged `binance` npm client (tiagosiebler's MainClient) through a
// gateway. Only configuration changes: `baseUrl` is the gateway. Ed25519 and RSA keys are
// given as `api_secret` (PKCS#8 PEM text), which the library documents and detects.
// Prints one JSON line per library call: {call, ok, error_class, error_message, result}.
//
//   node js_client.mjs --base http://127.0.0.1:8443 --key K --secret S --key-type hmac \
//       --scenario startup,balance,order,cancel,withdraw,listen_key

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { MainClient } from 'binance';

// The same order and withdrawal as common.py.
const ORDER = { symbol: 'BTCUSDT', side: 'BUY', quantity: 0.001, price: 20000, orderId: 28 };
const WITHDRAW = { coin: 'BTC', amount: 0.01, address: '1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2' };

const { values: a } = parseArgs({
  options: {
    base: { type: 'string' },
    key: { type: 'string', default: '' },
    secret: { type: 'string', default: '' },
    'private-key': { type: 'string', default: '' },
    'key-type': { type: 'string', default: 'hmac' },
    scenario: { type: 'string' },
  },
});
if (!a.base || !a.scenario) {
  console.error('usage: js_client.mjs --base URL [--key K --secret S | --private-key PEM] --key-type hmac|ed25519|rsa --scenario LIST');
  process.exit(2);
}

const options = { baseUrl: a.base.replace(/\/$/, ''), disableTimeSync: true };
if (a.key) {
  options.api_key = a.key;
  options.api_secret = a['key-type'] === 'hmac' ? a.secret : readFileSync(a['private-key'], 'utf8');
}
const client = new MainClient(options);
const state = {};

const scenarios = {
  startup: [
    ['testConnectivity', () => client.testConnectivity()],
    // getServerTime() ignores baseUrl (it asks the built-in exchange URL), so the
    // library's generic public GET asks the gateway for the same endpoint.
    ['get api/v3/time', async () => (await client.get('api/v3/time')).serverTime],
    ['getExchangeInfo', async () => (await client.getExchangeInfo()).symbols.map((s) => s.symbol)],
  ],
  balance: [
    ['getAccountInformation', async () => Object.fromEntries(
      (await client.getAccountInformation()).balances
        .filter((b) => Number(b.free)).map((b) => [b.asset, b.free]))],
  ],
  order: [
    ['submitNewOrder', async () => {
      const o = await client.submitNewOrder({
        symbol: ORDER.symbol, side: ORDER.side, type: 'LIMIT', timeInForce: 'GTC',
        quantity: ORDER.quantity, price: ORDER.price,
      });
      state.id = o.orderId;
      return { id: o.orderId, status: o.status, symbol: o.symbol };
    }],
  ],
  cancel: [
    ['cancelOrder', async () => {
      const o = await client.cancelOrder({ symbol: ORDER.symbol, orderId: state.id ?? ORDER.orderId });
      return { id: o.orderId, status: o.status };
    }],
  ],
  withdraw: [
    ['withdraw', async () => (await client.withdraw(WITHDRAW)).id],
  ],
  listen_key: [
    ['getSpotUserDataListenKey', async () => (await client.getSpotUserDataListenKey()).listenKey],
  ],
};

function emit(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

for (const name of a.scenario.split(',')) {
  if (!scenarios[name]) {
    emit({ call: name, ok: false, error_class: 'Error', error_message: `unknown scenario ${name}`, result: null });
    process.exit(2);
  }
  for (const [call, run] of scenarios[name]) {
    try {
      emit({ call, ok: true, error_class: null, error_message: null, result: (await run()) ?? null });
    } catch (e) {
      // The library rejects with a plain object {code, message, body, headers, ...} for an
      // HTTP error answer, and with an Error for anything else.
      const isError = e instanceof Error;
      emit({
        call,
        ok: false,
        error_class: isError ? e.constructor.name : (e?.code !== undefined ? 'BinanceApiError' : typeof e),
        error_message: isError ? e.message : (e?.message ?? String(e)),
        error_code: e?.code ?? null,
        result: e?.body ?? null,
      });
      console.error(isError ? e.stack : JSON.stringify(e?.body ?? e));
    }
  }
}
