// Rampart's gateway check for nginx with the JavaScript module (njs 0.7.9, Debian
// bookworm's libnginx-mod-http-js), for clients that sign the request BODY (ccxt's
// POST /api/v3/order and other form-encoded POSTs). Used by nginx-njs-gateway.conf.
//
//   1. js_content runs this handler only once nginx has read the whole request body
//      (Content-Length or chunked; in memory, or in a temp file when bigger than
//      client_body_buffer_size).
//   2. A subrequest to the internal location /_rampart/authz shows Rampart that body with
//      the original method, URI, API key and client address. The subrequest is given no
//      `body` option, so it reuses the request's own body buffers (njs's documented
//      default): the bytes Rampart checks are the bytes the API will get, never decoded
//      or rebuilt by this script, and a body nginx spilled to a temp file is sent from
//      that file. (Passing `body: r.requestBuffer` was tried too: byte-exact, but
//      r.requestBuffer throws "request body is in a file" once nginx writes the body to
//      disk, which a chunked upload does as soon as its encoded size fills
//      client_body_buffer_size, e.g. a 64 KiB body in 64 KiB chunks; such requests
//      could then only be refused.)
//      The subrequest goes through nginx's upstream block: keep-alive, proxy timeouts,
//      no DNS resolver needed. ngx.fetch in 0.7.9 has none of these (a new connection
//      per call) and would need the headers and body copied by hand.
//   3. Allowed (200): Rampart's identity headers go into js_var variables and the
//      request is handed to the named location @exchange_api by internalRedirect. That
//      location proxies the ORIGINAL request: the method, the URI exactly as sent and
//      the same body buffers, and streams the API's answer to the client without
//      holding it in memory. (A subrequest to the API instead would keep the API's
//      whole answer in memory, up to subrequest_output_buffer_size, and this script
//      would have to copy its status and headers by hand.)
//   4. Refused: the client gets Rampart's status, JSON body and X-Rampart-Error header
//      (the exchange's {"code","msg"} shape and statuses: nginx-njs-gateway.conf asks
//      Rampart for them with X-Rampart-Refusal-Shape: exchange).
//      Anything but a clear answer from Rampart (unreachable, 5xx) is a 502: fail closed.

// Rampart's answer headers that become the API's identity headers (js_var variables in
// nginx-njs-gateway.conf, sent with proxy_set_header).
const IDENTITY = [
    ['X-Rampart-Uid', 'rampart_uid'],
    ['X-Rampart-Key', 'rampart_key'],
    ['X-Rampart-Permissions', 'rampart_permissions'],
    ['X-Rampart-Auth', 'rampart_auth'],
    ['X-Rampart-Withdrawals-Locked-Until', 'rampart_locked'],
];

// Rampart's refusal headers the client sees.
const REFUSAL_HEADERS = ['X-Rampart-Error', 'X-Rampart-Withdrawals-Locked-Until', 'Retry-After'];

// A failure of the check itself, in the exchange's shape like Rampart's refusals.
function fail(r, status, code, message) {
    r.headersOut['Content-Type'] = 'application/json';
    r.headersOut['X-Rampart-Error'] = code;
    r.return(status, JSON.stringify({code: -1001, msg: message, rampart_code: code}));
}

async function authorize(r) {
    var reply;
    try {
        reply = await r.subrequest('/_rampart/authz', {
            // No `body` option: the request's own body (see 2. above). nginx's proxy
            // sends it with its decoded length, also when it arrived chunked.
            method: 'POST',
        });
    } catch (e) {
        r.error('rampart-authz: subrequest failed: ' + e);
        fail(r, 502, 'gateway_unavailable', 'The gateway could not check this request.');
        return;
    }

    if (reply.status === 200) {
        for (var i = 0; i < IDENTITY.length; i++) {
            var v = reply.headersOut[IDENTITY[i][0]];
            // Absent (a public route): empty, and proxy_set_header then sends nothing.
            r.variables[IDENTITY[i][1]] = v === undefined ? '' : v;
        }
        r.internalRedirect('@exchange_api');
        return;
    }

    if (reply.status >= 400 && reply.status < 500) {
        for (var j = 0; j < REFUSAL_HEADERS.length; j++) {
            var h = reply.headersOut[REFUSAL_HEADERS[j]];
            if (h !== undefined) {
                r.headersOut[REFUSAL_HEADERS[j]] = h;
            }
        }
        r.headersOut['Content-Type'] = reply.headersOut['Content-Type'] || 'application/json';
        r.return(reply.status, reply.responseText || '');
        return;
    }

    r.error('rampart-authz: Rampart answered ' + reply.status);
    fail(r, 502, 'gateway_unavailable', 'The gateway could not check this request.');
}

export default {authorize};
