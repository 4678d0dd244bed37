// An app (relying party) written with a Node OpenID library, unchanged, against a live broker.
//
//   node rp.mjs <openid-client|oauth4webapi> '<json: issuer, client_id, client_secret, auth_method, redirect_uri,
//                                              post_logout_redirect_uri, id_token_alg>'
//
// The browser's part (TikTok's page, the broker's consent page) is played by the test that runs this script: the
// script writes one JSON request per line on stdout and reads the answer as one JSON line on stdin:
//   {"browse": url, "at_tiktok": "allow"|"deny"}  ->  {"landed": url, "asked": bool}
//   {"await_logout": true}                        ->  {"logout_token": "<jwt>"}
// and ends with {"done": {...what was checked...}}. Any failed check throws: exit status 1, the reason on stderr.
// jose verifies every signature (ID tokens and the back-channel logout token) against the broker's JWKS.

import { createInterface } from "node:readline";
import * as jose from "jose";
import * as oauth from "oauth4webapi";
import * as client from "openid-client";

const [library, rawConfig] = process.argv.slice(2);
const cfg = JSON.parse(rawConfig);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function ask(request) {
  process.stdout.write(JSON.stringify(request) + "\n");
  const { value, done } = await lines.next();
  if (done) throw new Error("the test stopped answering");
  return JSON.parse(value);
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const jwks = jose.createRemoteJWKSet(new URL(`${cfg.issuer}/.well-known/jwks.json`));

async function verifiedIdToken(idToken, nonce) {
  const { payload, protectedHeader } = await jose.jwtVerify(idToken, jwks, {
    issuer: cfg.issuer, audience: cfg.client_id, algorithms: [cfg.id_token_alg], requiredClaims: ["auth_time", "sid"],
  });
  check(protectedHeader.alg === cfg.id_token_alg, `ID token alg ${protectedHeader.alg}`);
  check(payload.nonce === nonce, "nonce");
  return payload;
}

async function verifiedLogoutToken(token) {
  // OpenID Back-Channel Logout 1.0 section 2.6, with jose.
  const { payload } = await jose.jwtVerify(token, jwks, {
    issuer: cfg.issuer, audience: cfg.client_id, typ: "logout+jwt", algorithms: [cfg.id_token_alg],
    requiredClaims: ["iat", "exp", "jti", "sid", "sub", "events"], maxTokenAge: "2 minutes",
  });
  check(payload.events["http://schemas.openid.net/event/backchannel-logout"] !== undefined, "logout event");
  check(payload.nonce === undefined, "no nonce in a logout token");
  return payload;
}

// ---- openid-client ----

async function withOpenidClient() {
  const auth = { client_secret_basic: client.ClientSecretBasic, client_secret_post: client.ClientSecretPost,
    none: client.None }[cfg.auth_method];
  const metadata = { id_token_signed_response_alg: cfg.id_token_alg };
  if (cfg.client_secret) metadata.client_secret = cfg.client_secret;
  const config = await client.discovery(new URL(cfg.issuer), cfg.client_id, metadata,
    cfg.client_secret ? auth(cfg.client_secret) : auth(),
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] });
  const server = config.serverMetadata();
  check(server.end_session_endpoint === `${cfg.issuer}/logout`, "end_session_endpoint");
  check(server.id_token_signing_alg_values_supported.includes("RS256"), "RS256 in discovery");

  async function signIn(extra = {}, atTikTok = "allow") {
    const verifier = client.randomPKCECodeVerifier();
    const nonce = client.randomNonce();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: cfg.redirect_uri, scope: "openid profile offline_access email", state, nonce,
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: "S256", ...extra,
    });
    const { landed, asked } = await ask({ browse: url.href, at_tiktok: atTikTok });
    const checks = { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce };
    if (extra.max_age !== undefined) checks.maxAge = Number(extra.max_age);
    return { tokens: await client.authorizationCodeGrant(config, new URL(landed), checks), asked, nonce };
  }

  let cancelled = null;
  try {
    await signIn({}, "deny");
  } catch (error) {
    cancelled = error;
  }
  check(cancelled instanceof client.AuthorizationResponseError && cancelled.error === "access_denied",
    `a cancel at TikTok is access_denied at the app (${cancelled})`);

  const first = await signIn();
  check(first.asked, "the consent page was shown");
  const claims = first.tokens.claims();
  await verifiedIdToken(first.tokens.id_token, first.nonce);
  check(first.tokens.scope === "openid profile offline_access", `granted scope ${first.tokens.scope}`);

  const again = await signIn({ max_age: "0" });
  check(!again.asked, "the consent is remembered");
  check(again.tokens.claims().auth_time >= claims.auth_time, "auth_time after max_age=0");

  const refreshed = await client.refreshTokenGrant(config, again.tokens.refresh_token);
  const renewed = refreshed.claims();
  check(renewed.sub === claims.sub && renewed.sid === again.tokens.claims().sid, "refresh: same sub and sid");
  await verifiedIdToken(refreshed.id_token, undefined);
  const info = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
  check(info.sub === claims.sub, "userinfo");
  if (cfg.client_secret) {
    const introspected = await client.tokenIntrospection(config, refreshed.access_token);
    check(introspected.active === true && introspected.client_id === cfg.client_id, "introspection");
  }
  await client.tokenRevocation(config, first.tokens.refresh_token);
  let refused = null;
  try {
    await client.refreshTokenGrant(config, first.tokens.refresh_token);
  } catch (error) {
    refused = error;
  }
  check(refused?.error === "invalid_grant", `a revoked refresh token is refused (${refused})`);

  const endUrl = client.buildEndSessionUrl(config, {
    id_token_hint: refreshed.id_token, post_logout_redirect_uri: cfg.post_logout_redirect_uri, state: "bye",
  });
  const { landed } = await ask({ browse: endUrl.href, at_tiktok: "allow" });
  check(landed === `${cfg.post_logout_redirect_uri}?state=bye`, `after logout: ${landed}`);
  const { logout_token: logoutToken } = await ask({ await_logout: true });
  const logout = await verifiedLogoutToken(logoutToken);
  check(logout.sid === renewed.sid && logout.sub === claims.sub, "the logout token names the session");
  return { sub: claims.sub, sid: logout.sid };
}

// ---- oauth4webapi ----

async function withOauth4webapi() {
  const insecure = { [oauth.allowInsecureRequests]: true };
  const issuer = new URL(cfg.issuer);
  const as = await oauth.discoveryRequest(issuer, insecure).then((r) => oauth.processDiscoveryResponse(issuer, r));
  const rp = { client_id: cfg.client_id, id_token_signed_response_alg: cfg.id_token_alg };
  const clientAuth = { client_secret_basic: () => oauth.ClientSecretBasic(cfg.client_secret),
    client_secret_post: () => oauth.ClientSecretPost(cfg.client_secret), none: () => oauth.None() }[cfg.auth_method]();

  async function signIn(extra = {}, atTikTok = "allow") {
    const verifier = oauth.generateRandomCodeVerifier();
    const nonce = oauth.generateRandomNonce();
    const state = oauth.generateRandomState();
    const url = new URL(as.authorization_endpoint);
    for (const [name, value] of Object.entries({
      client_id: cfg.client_id, redirect_uri: cfg.redirect_uri, response_type: "code", state, nonce,
      scope: "openid profile offline_access", code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256", ...extra,
    })) url.searchParams.set(name, value);
    const { landed, asked } = await ask({ browse: url.href, at_tiktok: atTikTok });
    const params = oauth.validateAuthResponse(as, rp, new URL(landed), state);
    const response = await oauth.authorizationCodeGrantRequest(as, rp, clientAuth, params, cfg.redirect_uri, verifier,
      insecure);
    const options = { expectedNonce: nonce, requireIdToken: true };
    if (extra.max_age !== undefined) options.maxAge = Number(extra.max_age);
    const result = await oauth.processAuthorizationCodeResponse(as, rp, response, options);
    await verifiedIdToken(result.id_token, nonce);
    return { result, claims: oauth.getValidatedIdTokenClaims(result), asked };
  }

  let cancelled = null;
  try {
    await signIn({}, "deny");
  } catch (error) {
    cancelled = error;
  }
  check(cancelled instanceof oauth.AuthorizationResponseError && cancelled.error === "access_denied",
    `a cancel at TikTok is access_denied at the app (${cancelled})`);

  const first = await signIn();
  check(first.asked, "the consent page was shown");
  const again = await signIn({ max_age: "0" });
  check(!again.asked && again.claims.auth_time >= first.claims.auth_time, "max_age=0");

  const refreshResponse = await oauth.refreshTokenGrantRequest(as, rp, clientAuth, again.result.refresh_token,
    insecure);
  const refreshed = await oauth.processRefreshTokenResponse(as, rp, refreshResponse);
  const renewed = oauth.getValidatedIdTokenClaims(refreshed);
  check(renewed.sub === first.claims.sub && renewed.sid === again.claims.sid, "refresh: same sub and sid");
  await verifiedIdToken(refreshed.id_token, undefined);

  const infoResponse = await oauth.userInfoRequest(as, rp, refreshed.access_token, insecure);
  const info = await oauth.processUserInfoResponse(as, rp, first.claims.sub, infoResponse);
  check(info.sub === first.claims.sub, "userinfo");
  if (cfg.client_secret) {
    const introspection = await oauth.introspectionRequest(as, rp, clientAuth, refreshed.access_token, insecure);
    const introspected = await oauth.processIntrospectionResponse(as, rp, introspection);
    check(introspected.active === true, "introspection");
  }
  const revocation = await oauth.revocationRequest(as, rp, clientAuth, first.result.refresh_token, insecure);
  await oauth.processRevocationResponse(revocation);
  let refused = null;
  try {
    const again2 = await oauth.refreshTokenGrantRequest(as, rp, clientAuth, first.result.refresh_token, insecure);
    await oauth.processRefreshTokenResponse(as, rp, again2);
  } catch (error) {
    refused = error;
  }
  check(refused?.error === "invalid_grant", `a revoked refresh token is refused (${refused})`);

  const endUrl = new URL(as.end_session_endpoint);
  endUrl.searchParams.set("id_token_hint", refreshed.id_token);
  endUrl.searchParams.set("post_logout_redirect_uri", cfg.post_logout_redirect_uri);
  endUrl.searchParams.set("state", "bye");
  const { landed } = await ask({ browse: endUrl.href, at_tiktok: "allow" });
  check(landed === `${cfg.post_logout_redirect_uri}?state=bye`, `after logout: ${landed}`);
  const { logout_token: logoutToken } = await ask({ await_logout: true });
  const logout = await verifiedLogoutToken(logoutToken);
  check(logout.sid === renewed.sid && logout.sub === first.claims.sub, "the logout token names the session");
  return { sub: first.claims.sub, sid: logout.sid };
}

const run = { "openid-client": withOpenidClient, oauth4webapi: withOauth4webapi }[library];
if (!run) throw new Error(`unknown library ${library}`);
try {
  const summary = await run();
  process.stdout.write(JSON.stringify({ done: summary }) + "\n");
  process.exit(0);
} catch (error) {
  process.stderr.write(`${error?.stack ?? error}\n${error?.cause ? JSON.stringify(error.cause) : ""}\n`);
  process.exit(1);
}
