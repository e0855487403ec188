// OAuth for the Verda emulator's management API (verda-api.md §1): POST /oauth2/token hands out
// an access token and a refresh token for the client credentials; access tokens expire on the
// emulated clock, and a refresh token is good for one refresh.
import { randomBytes } from 'node:crypto';
import type { EmulatedClock } from './verda-clock.js';
import { requestObject } from './verda-validate.js';
import { invalid, unauthorized } from './verda-wire.js';

export interface OAuthTokensOptions {
  clock: EmulatedClock;
  clientId: string;
  clientSecret: string;
  /** Access token lifetime in emulated seconds. */
  accessTtlSeconds: number;
  /** Refresh token lifetime in emulated seconds. */
  refreshTtlSeconds: number;
}

/** The 200 body of POST /oauth2/token. */
export interface TokenResponse {
  access_token: string;
  refresh_token: string;
  scope: string;
  token_type: 'Bearer';
  expires_in: number;
}

interface IssuedToken {
  expiresAt: number;
  revoked: boolean;
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearerToken(authorization: string | undefined): string | undefined {
  return /^Bearer\s+(\S+)$/i.exec(authorization ?? '')?.[1];
}

export class OAuthTokens {
  private readonly accessTokens = new Map<string, IssuedToken>();
  private readonly refreshTokens = new Map<string, IssuedToken>();
  private readonly handedOut: string[] = [];

  constructor(private readonly opts: OAuthTokensOptions) {}

  /** POST /oauth2/token: a client_credentials or a refresh_token grant. */
  grant(body: unknown): TokenResponse {
    const request = requestObject(body);
    if (request.grant_type === 'client_credentials') {
      if (
        request.client_id !== this.opts.clientId ||
        request.client_secret !== this.opts.clientSecret
      ) {
        throw unauthorized('invalid client credentials');
      }
      return this.issue();
    }
    if (request.grant_type === 'refresh_token') {
      const presented = typeof request.refresh_token === 'string' ? request.refresh_token : '';
      if (!this.isValid(this.refreshTokens.get(presented))) {
        throw unauthorized('invalid or expired refresh token');
      }
      // Used once: the grant replaces it with a new pair.
      this.refreshTokens.delete(presented);
      return this.issue();
    }
    throw invalid('grant_type must be client_credentials or refresh_token');
  }

  /** Every management call but the token endpoint needs a live access token. */
  authenticate(authorization: string | undefined): void {
    const presented = bearerToken(authorization);
    const token = presented ? this.accessTokens.get(presented) : undefined;
    if (!token || token.revoked) throw unauthorized('invalid access token');
    if (token.expiresAt <= this.opts.clock.now()) throw unauthorized('access token expired');
  }

  /** Revokes every access token; refresh tokens stay valid. */
  revokeAll(): void {
    for (const token of this.accessTokens.values()) token.revoked = true;
  }

  /** Fault injection: the caller's access token is revoked, or expires at `at`. */
  spoil(kind: 'revoke-token' | 'expire-token', authorization: string | undefined, at: number) {
    const token = this.accessTokens.get(bearerToken(authorization) ?? '');
    if (!token) return;
    if (kind === 'revoke-token') token.revoked = true;
    else token.expiresAt = at;
  }

  /** Every access and refresh token handed out so far. */
  issued(): string[] {
    return [...this.handedOut];
  }

  private isValid(token: IssuedToken | undefined): boolean {
    return token !== undefined && !token.revoked && token.expiresAt > this.opts.clock.now();
  }

  private issue(): TokenResponse {
    const now = this.opts.clock.now();
    const access = `emu-at-${randomBytes(18).toString('hex')}`;
    const refresh = `emu-rt-${randomBytes(18).toString('hex')}`;
    this.accessTokens.set(access, {
      expiresAt: now + this.opts.accessTtlSeconds * 1000,
      revoked: false,
    });
    this.refreshTokens.set(refresh, {
      expiresAt: now + this.opts.refreshTtlSeconds * 1000,
      revoked: false,
    });
    this.handedOut.push(access, refresh);
    return {
      access_token: access,
      refresh_token: refresh,
      scope: 'cloud-api-v1',
      token_type: 'Bearer',
      expires_in: this.opts.accessTtlSeconds,
    };
  }
}
