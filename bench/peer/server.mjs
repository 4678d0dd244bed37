// The peer of figure `peer`: panva's oidc-provider, one process, on a Redis of its own, through the ioredis adapter
// its documentation gave (find, upsert with MULTI, consume), with rotating refresh tokens and ES256 JWT access
// tokens. One confidential client, `bench-app`. Usage: node server.mjs (PORT, REDIS_URL, ISSUER from the
// environment). POST /bench/tokens?count=N (loopback only, outside the clock) mints N grants, each with a refresh
// token and an opaque access token, as a finished authorization code flow would have left them.
import { generateKeyPairSync } from 'node:crypto';

import Redis from 'ioredis';
import Provider from 'oidc-provider';

const { PORT, REDIS_URL, ISSUER } = process.env;
const CLIENT = { id: 'bench-app', secret: 'bench-app-secret-0123456789abcdef' };
const RESOURCE = 'https://api.bench.example';
const ACCOUNT = 'bench-user';

const client = new Redis(REDIS_URL, { keyPrefix: 'oidc:' });
const grantable = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest']);
const consumable = new Set(['AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);
const grantKeyFor = (id) => `grant:${id}`;
const userCodeKeyFor = (userCode) => `userCode:${userCode}`;
const uidKeyFor = (uid) => `uid:${uid}`;

class RedisAdapter {
  constructor(name) { this.name = name; }

  key(id) { return `${this.name}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const store = consumable.has(this.name) ? { payload: JSON.stringify(payload) } : JSON.stringify(payload);
    const multi = client.multi();
    multi[consumable.has(this.name) ? 'hmset' : 'set'](key, store);
    if (expiresIn) multi.expire(key, expiresIn);
    if (grantable.has(this.name) && payload.grantId) {
      const grantKey = grantKeyFor(payload.grantId);
      multi.rpush(grantKey, key);
      const ttl = await client.ttl(grantKey);
      if (expiresIn > ttl) multi.expire(grantKey, expiresIn);
    }
    if (payload.userCode) {
      multi.set(userCodeKeyFor(payload.userCode), id);
      multi.expire(userCodeKeyFor(payload.userCode), expiresIn);
    }
    if (payload.uid) {
      multi.set(uidKeyFor(payload.uid), id);
      multi.expire(uidKeyFor(payload.uid), expiresIn);
    }
    await multi.exec();
  }

  async find(id) {
    const data = consumable.has(this.name) ? await client.hgetall(this.key(id)) : await client.get(this.key(id));
    if (!data || (typeof data === 'object' && Object.keys(data).length === 0)) return undefined;
    if (typeof data === 'string') return JSON.parse(data);
    const { payload, ...rest } = data;
    return { ...rest, ...JSON.parse(payload) };
  }

  async findByUid(uid) { return this.find(await client.get(uidKeyFor(uid))); }

  async findByUserCode(userCode) { return this.find(await client.get(userCodeKeyFor(userCode))); }

  async destroy(id) { await client.del(this.key(id)); }

  async revokeByGrantId(grantId) {
    const multi = client.multi();
    const tokens = await client.lrange(grantKeyFor(grantId), 0, -1);
    tokens.forEach((token) => multi.del(token));
    multi.del(grantKeyFor(grantId));
    await multi.exec();
  }

  async consume(id) { await client.hset(this.key(id), 'consumed', Math.floor(Date.now() / 1000)); }
}

function signingKey(type, options, alg) {
  const jwk = generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: `bench-${alg.toLowerCase()}` };
}

const provider = new Provider(ISSUER, {
  adapter: RedisAdapter,
  clients: [{
    client_id: CLIENT.id, client_secret: CLIENT.secret, grant_types: ['authorization_code', 'refresh_token'],
    redirect_uris: ['https://app.bench.example/cb'], response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic', id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [signingKey('ec', { namedCurve: 'P-256' }, 'ES256'), signingKey('rsa', { modulusLength: 2048 }, 'RS256')] },
  cookies: { keys: ['bench-cookie-key-0123456789abcdef'] },
  findAccount: async (ctx, sub) => ({ accountId: sub, async claims() { return { sub }; } }),
  scopes: ['openid', 'offline_access', 'api'],
  rotateRefreshToken: true,
  ttl: { AccessToken: 300, RefreshToken: 14 * 86400, Grant: 14 * 86400, IdToken: 300 },
  features: {
    devInteractions: { enabled: false },
    // As the broker does: a client learns only about its own tokens.
    introspection: { enabled: true, allowedPolicy: async (ctx, caller, token) => token.clientId === caller.clientId },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api', audience: RESOURCE, accessTokenTTL: 300, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});

async function mint(count) {
  const registered = await provider.Client.find(CLIENT.id);
  const now = Math.floor(Date.now() / 1000);
  const minted = [];
  for (let i = 0; i < count; i += 1) {
    const grant = new provider.Grant({ accountId: ACCOUNT, clientId: CLIENT.id });
    grant.addOIDCScope('openid offline_access');
    grant.addResourceScope(RESOURCE, 'api');
    const grantId = await grant.save();
    const refresh = new provider.RefreshToken({
      accountId: ACCOUNT, client: registered, grantId, gty: 'authorization_code', authTime: now,
      scope: 'openid offline_access api', resource: RESOURCE,
    });
    const access = new provider.AccessToken({
      accountId: ACCOUNT, client: registered, grantId, gty: 'authorization_code', scope: 'openid',
    });
    minted.push({ refresh_token: await refresh.save(), access_token: await access.save() });
  }
  return minted;
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/bench/tokens' && ctx.method === 'POST') {
    ctx.body = await mint(Number(ctx.query.count || 1));
    return;
  }
  await next();
});

provider.listen(Number(PORT), '127.0.0.1', () => process.stdout.write(`listening on ${PORT}\n`));
