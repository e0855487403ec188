// Verifies AWS Signature V4 on incoming requests (header or presigned query form), as R2 does:
// a wrong access key id and a wrong secret are both refused. The body hash is taken as declared
// in x-amz-content-sha256 (UNSIGNED-PAYLOAD or hex); the body itself is not re-hashed here.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export type SigV4Result =
  | { ok: true; accessKeyId: string }
  | {
      ok: false;
      code: 'InvalidAccessKeyId' | 'SignatureDoesNotMatch' | 'AccessDenied';
      message: string;
    };

export interface SigV4Request {
  method: string;
  /** The raw request target: path and query exactly as received. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

const escapeUri = (s: string): string =>
  encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );

const decode = (s: string): string => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};

function canonicalQuery(rawQuery: string, skip: string): string {
  const pairs = rawQuery
    .split('&')
    .filter((p) => p.length > 0)
    .map((p) => {
      const eq = p.indexOf('=');
      const k = decode(eq < 0 ? p : p.slice(0, eq));
      const v = decode(eq < 0 ? '' : p.slice(eq + 1));
      return [escapeUri(k), escapeUri(v)] as const;
    })
    .filter(([k]) => k !== skip);
  pairs.sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join('&');
}

const headerValue = (h: SigV4Request['headers'], name: string): string => {
  const v = h[name];
  return (Array.isArray(v) ? v.join(',') : (v ?? '')).trim().replace(/\s+/g, ' ');
};

export function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  const kDate = createHmac('sha256', `AWS4${secret}`).update(date).digest();
  const kRegion = createHmac('sha256', kDate).update(region).digest();
  const kService = createHmac('sha256', kRegion).update(service).digest();
  return createHmac('sha256', kService).update('aws4_request').digest();
}

export interface SigV4Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

type Refusal = Extract<SigV4Result, { ok: false }>;

/** A request's signature as sent, in the Authorization header or a presigned URL's query. */
interface SentSignature {
  credential: string;
  signedHeaders: string;
  signature: string;
  amzDate: string;
  payloadHash: string;
  /** Presigned: X-Amz-Signature is left out of the canonical query. */
  presigned: boolean;
}

/** X-Amz-Date (20260101T000000Z) in ms since the epoch. */
function amzDateMs(text: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, sec] = m.map(Number);
  return Date.UTC(y ?? 0, (mo ?? 1) - 1, d ?? 1, h ?? 0, mi ?? 0, sec ?? 0);
}

function readSignature(req: SigV4Request, params: URLSearchParams): SentSignature | Refusal {
  const auth = headerValue(req.headers, 'authorization');
  if (auth) {
    const m =
      /^AWS4-HMAC-SHA256 Credential=([^,]+), ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)$/.exec(
        auth,
      );
    if (!m)
      return {
        ok: false,
        code: 'AccessDenied',
        message: 'Unsupported or malformed Authorization header',
      };
    const [, credential = '', signedHeaders = '', signature = ''] = m;
    return {
      credential,
      signedHeaders,
      signature,
      amzDate: headerValue(req.headers, 'x-amz-date'),
      payloadHash: headerValue(req.headers, 'x-amz-content-sha256') || 'UNSIGNED-PAYLOAD',
      presigned: false,
    };
  }
  if (params.get('X-Amz-Algorithm') === 'AWS4-HMAC-SHA256') {
    // A presigned URL past X-Amz-Date + X-Amz-Expires is refused, as R2 and S3 refuse it.
    const signedAt = amzDateMs(params.get('X-Amz-Date') ?? '');
    const expires = Number(params.get('X-Amz-Expires') ?? 'NaN');
    if (
      signedAt === undefined ||
      !Number.isInteger(expires) ||
      expires < 1 ||
      expires > 604_800 ||
      Date.now() > signedAt + expires * 1000
    )
      return { ok: false, code: 'AccessDenied', message: 'Request has expired' };
    return {
      credential: params.get('X-Amz-Credential') ?? '',
      signedHeaders: params.get('X-Amz-SignedHeaders') ?? '',
      signature: params.get('X-Amz-Signature') ?? '',
      amzDate: params.get('X-Amz-Date') ?? '',
      payloadHash: 'UNSIGNED-PAYLOAD',
      presigned: true,
    };
  }
  return { ok: false, code: 'AccessDenied', message: 'Anonymous access is not allowed' };
}

/** Checks the signature against the key pair the request names (one of `creds`). */
export function verifySigV4(
  req: SigV4Request,
  creds: SigV4Credentials | readonly SigV4Credentials[],
): SigV4Result {
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  const rawQuery = q < 0 ? '' : req.url.slice(q + 1);
  const sent = readSignature(req, new URLSearchParams(rawQuery));
  if ('ok' in sent) return sent;

  const [accessKeyId = '', date = '', region = '', service = '', terminator = ''] =
    sent.credential.split('/');
  const pair = [creds].flat().find((c) => c.accessKeyId === accessKeyId);
  if (!pair) {
    return {
      ok: false,
      code: 'InvalidAccessKeyId',
      message: 'The AWS Access Key Id you provided does not exist in our records.',
    };
  }
  if (terminator !== 'aws4_request' || !date || !sent.amzDate.startsWith(date)) {
    return { ok: false, code: 'AccessDenied', message: 'Malformed credential scope' };
  }

  const names = sent.signedHeaders.split(';');
  const canonicalRequest = [
    req.method,
    path,
    canonicalQuery(rawQuery, sent.presigned ? 'X-Amz-Signature' : ''),
    ...names.map((n) => `${n}:${headerValue(req.headers, n)}`),
    '',
    sent.signedHeaders,
    sent.payloadHash,
  ].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = [
    'AWS4-HMAC-SHA256',
    sent.amzDate,
    scope,
    createHash('sha256').update(canonicalRequest).digest('hex'),
  ].join('\n');
  const expected = createHmac('sha256', signingKey(pair.secretAccessKey, date, region, service))
    .update(stringToSign)
    .digest();
  const given = Buffer.from(sent.signature, 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return {
      ok: false,
      code: 'SignatureDoesNotMatch',
      message:
        'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
    };
  }
  return { ok: true, accessKeyId };
}
