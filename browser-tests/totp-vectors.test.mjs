// Unit checks (no server, no browser) for the base32 decoder and TOTP in lib.mjs,
// against the RFC 6238 appendix B SHA-1 vectors and the RFC 4648 base32 vectors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { base32Decode, hotp, totp, totpStep } from './lib.mjs';

const RFC_SECRET = Buffer.from('12345678901234567890', 'ascii');

test('base32Decode: RFC 4648 section 10 vectors', () => {
  const vectors = [
    ['', ''],
    ['MY======', 'f'],
    ['MZXQ====', 'fo'],
    ['MZXW6===', 'foo'],
    ['MZXW6YQ=', 'foob'],
    ['MZXW6YTB', 'fooba'],
    ['MZXW6YTBOI======', 'foobar'],
  ];
  for (const [encoded, plain] of vectors) {
    assert.equal(base32Decode(encoded).toString('ascii'), plain, encoded);
  }
});

test('base32Decode: spaces, lower case and no padding as shown to people', () => {
  // "12345678901234567890" in base32, grouped by 4 the way an enrolment page shows it.
  assert.deepEqual(base32Decode('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'), RFC_SECRET);
  assert.deepEqual(base32Decode('gezd gnbv gy3t qojq gezd gnbv gy3t qojq'), RFC_SECRET);
  assert.deepEqual(base32Decode(' GEZD GNBV\nGY3T QOJQ GEZD GNBV GY3T QOJQ '), RFC_SECRET);
  assert.deepEqual(base32Decode('MZXW6'), Buffer.from('foo'));
  assert.throws(() => base32Decode('GEZD1'), /not a base32 character/);
});

test('totp: RFC 6238 appendix B, SHA-1, 8 digits', () => {
  const vectors = [
    [59, '94287082'],
    [1111111109, '07081804'],
    [1111111111, '14050471'],
    [1234567890, '89005924'],
    [2000000000, '69279037'],
    [20000000000, '65353130'],
  ];
  for (const [t, code] of vectors) {
    assert.equal(totp(RFC_SECRET, t, 8), code, `T=${t}`);
  }
});

test('totp: 6-digit codes are the last 6 digits', () => {
  assert.equal(totp(RFC_SECRET, 59), '287082');
  assert.equal(totp(RFC_SECRET, 1111111109), '081804');
  assert.equal(totp(RFC_SECRET, 1111111111), '050471');
  // Same step, same code; the next step differs.
  assert.equal(totp(RFC_SECRET, 30), totp(RFC_SECRET, 59));
  assert.notEqual(totp(RFC_SECRET, 59), totp(RFC_SECRET, 60));
});

test('hotp: RFC 4226 appendix D', () => {
  const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];
  expected.forEach((code, counter) => assert.equal(hotp(RFC_SECRET, counter), code, `counter ${counter}`));
});

test('totpStep: 30-second steps from Unix milliseconds', () => {
  assert.equal(totpStep(59_000), 1);
  assert.equal(totpStep(59_999), 1);
  assert.equal(totpStep(60_000), 2);
  assert.equal(totpStep(1111111109_000), 37037036);
});
