// Passkeys (WebAuthn) on Rampart's pages. No dependencies, no build step; loaded as
// /static/passkeys.js under `script-src 'self'`, so every listener is attached from here.
//
// The server (webauthn-rs) sends ceremony options as JSON with binary fields as base64url
// strings; navigator.credentials wants ArrayBuffers. The credential goes back as JSON with
// base64url (no padding) strings again.
//
// Buttons handled, when present on the page:
//   #add-passkey            register a passkey named by #passkey-name   (Security Center)
//   #passkey-step-up        confirm it's you with a passkey              (Security Center)
//   #passkey-signin         sign in with a passkey                       (/signin)
//   #passkey-second-factor  passkey as the second factor                 (/signin/second-factor)
//   #passkey-reset          prove the passkey for a password reset       (/reset-password/{token})
// Messages go to #passkey-status.
'use strict';

(function () {
  const STEP_UP_TEXT =
    "Confirm it's you first with the \"Confirm it's me\" box under Two-step verification, then try again.";

  // ---- base64url <-> ArrayBuffer ----

  function fromB64url(text) {
    const b64 = String(text).replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
    const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes.buffer;
  }

  function toB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let bin = '';
    for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  // serde writes absent options as null; WebIDL wants them left out.
  function withoutNulls(value) {
    if (Array.isArray(value)) return value.map(withoutNulls);
    if (value && typeof value === 'object') {
      const out = {};
      for (const [k, v] of Object.entries(value)) if (v !== null) out[k] = withoutNulls(v);
      return out;
    }
    return value;
  }

  const withBinaryIds = (list) => (list || []).map((d) => Object.assign({}, d, { id: fromB64url(d.id) }));

  function creationOptions(json) {
    const pk = withoutNulls(json);
    pk.challenge = fromB64url(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: fromB64url(pk.user.id) });
    if (pk.excludeCredentials) pk.excludeCredentials = withBinaryIds(pk.excludeCredentials);
    // Signing in with a passkey is usernameless (no allowCredentials), so the credential
    // must be discoverable. webauthn-rs's passkey registration asks for "discouraged";
    // ask for a resident key, or the passkey could be added but never used to sign in.
    pk.authenticatorSelection = Object.assign({}, pk.authenticatorSelection, {
      residentKey: 'required',
      requireResidentKey: true,
    });
    return pk;
  }

  function requestOptions(json) {
    const pk = withoutNulls(json);
    pk.challenge = fromB64url(pk.challenge);
    if (pk.allowCredentials) pk.allowCredentials = withBinaryIds(pk.allowCredentials);
    return pk;
  }

  function registrationJSON(cred) {
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: {
        attestationObject: toB64url(cred.response.attestationObject),
        clientDataJSON: toB64url(cred.response.clientDataJSON),
      },
      extensions: {},
    };
  }

  function assertionJSON(cred) {
    const r = cred.response;
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: toB64url(r.authenticatorData),
        clientDataJSON: toB64url(r.clientDataJSON),
        signature: toB64url(r.signature),
        userHandle: r.userHandle ? toB64url(r.userHandle) : null,
      },
      extensions: {},
    };
  }

  // ---- talking to the server ----

  async function post(url, body) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      credentials: 'same-origin',
      body: JSON.stringify(body),
    });
    let data = null;
    try {
      data = await res.json();
    } catch (_) {
      // not JSON; handled below
    }
    const error = data && data.error;
    if (!res.ok || error) {
      const err = new Error((error && error.message) || `The server answered ${res.status}. Please try again.`);
      err.code = error && error.code;
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function publicKeyOf(start) {
    if (!start || !start.ceremony_id || !start.options || !start.options.publicKey) {
      throw new Error('The server sent an unexpected answer. Please try again.');
    }
    return start.options.publicKey;
  }

  // Passkey ceremony for signing in or confirming it's you: start, ask the authenticator, finish.
  async function authenticate(startUrl, startBody, finishUrl) {
    const start = await post(startUrl, startBody);
    const publicKey = requestOptions(publicKeyOf(start));
    const cred = await navigator.credentials.get({ publicKey });
    if (!cred) throw new Error('No passkey was used.');
    return post(finishUrl, { ceremony_id: start.ceremony_id, credential: assertionJSON(cred) });
  }

  async function addPasskey() {
    const input = document.getElementById('passkey-name');
    const name = input ? input.value.trim() : '';
    const start = await post('/api/v1/me/passkeys/register/start', { name });
    const publicKey = creationOptions(publicKeyOf(start));
    const cred = await navigator.credentials.create({ publicKey });
    if (!cred) throw new Error('No passkey was created.');
    await post('/api/v1/me/passkeys/register/finish', {
      ceremony_id: start.ceremony_id,
      credential: registrationJSON(cred),
    });
    location.reload();
  }

  async function signIn() {
    await authenticate('/api/v1/sessions/passkey/start', {}, '/api/v1/sessions/passkey/finish');
    location.href = '/security';
  }

  async function secondFactor() {
    const field = document.querySelector('input[name=challenge]');
    const challenge = field ? field.value : '';
    await authenticate('/api/v1/sessions/passkey/start', { challenge }, '/api/v1/sessions/passkey/finish');
    location.href = '/security';
  }

  async function stepUp() {
    await authenticate('/api/v1/me/step-up/passkey/start', {}, '/api/v1/me/step-up/passkey/finish');
    location.reload();
  }

  // The reset link's own ceremony: the new password and the passkey go together to the API
  // (no session, no cookie: the link's token is the authority, as in the form).
  async function resetWithPasskey() {
    const btn = document.getElementById('passkey-reset');
    const token = btn.dataset.token;
    const password = document.querySelector('input[name=new_password]');
    if (!password || !password.value) throw new Error('Choose the new password first, then use your passkey.');
    const start = await post('/api/v1/password-reset/passkey/options', { token });
    const publicKey = requestOptions(publicKeyOf(start));
    const cred = await navigator.credentials.get({ publicKey });
    if (!cred) throw new Error('No passkey was used.');
    await post('/api/v1/password-reset/complete', {
      token,
      new_password: password.value,
      passkey: { ceremony_id: start.ceremony_id, credential: assertionJSON(cred) },
    });
    location.href = '/signin?notice=password_reset';
  }

  // ---- page wiring ----

  function describe(err) {
    if (err && err.code === 'step_up_required') return STEP_UP_TEXT;
    switch (err && err.name) {
      case 'NotAllowedError':
        return 'The passkey request was cancelled or timed out, or no passkey for this site was found.';
      case 'InvalidStateError':
        return 'This device already holds a passkey for your account.';
      case 'SecurityError':
        return 'Passkeys cannot be used on this address.';
      case 'NotSupportedError':
        return 'This device cannot create or use passkeys.';
      default:
        return (err && err.message) || 'Something went wrong. Please try again.';
    }
  }

  function say(afterEl, text) {
    let status = document.getElementById('passkey-status');
    if (!status) {
      status = document.createElement('p');
      status.id = 'passkey-status';
      status.setAttribute('role', 'status');
      afterEl.insertAdjacentElement('afterend', status);
    }
    status.textContent = text;
  }

  function bind(id, action) {
    const btn = document.getElementById(id);
    if (!btn) return;
    btn.addEventListener('click', async (event) => {
      event.preventDefault(); // the button may sit inside a form
      if (btn.disabled) return;
      if (!window.PublicKeyCredential || !navigator.credentials) {
        say(btn, 'This browser does not support passkeys.');
        return;
      }
      btn.disabled = true;
      say(btn, '');
      try {
        await action(); // navigates away on success
      } catch (err) {
        say(btn, describe(err));
        btn.disabled = false;
      }
    });
  }

  function init() {
    bind('add-passkey', addPasskey);
    bind('passkey-step-up', stepUp);
    bind('passkey-signin', signIn);
    bind('passkey-second-factor', secondFactor);
    bind('passkey-reset', resetWithPasskey);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
