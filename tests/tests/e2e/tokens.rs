use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::Harness;
use palmlink_domain::OperatorActor;

fn token_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let header =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let claims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    (header, claims)
}

#[tokio::test]
async fn token_from_json_form_and_basic() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let (header, claims) = token_parts(&t.token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
        "tenant",
    ] {
        assert!(!claims[claim].is_null(), "missing claim {claim}");
    }
    assert_eq!(claims["sub"], t.client_id);
    assert_eq!(claims["tenant"], t.id);

    let jwks = h
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(jwks.body["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks.body["keys"][0]["crv"], "Ed25519");

    let form = h
        .send(h.http.post(h.url("/v1/auth/token")).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &t.client_id),
            ("client_secret", &t.secret),
            ("scope", "devices users"),
        ]))
        .await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert_eq!(form.body["token_type"], "Bearer");
    assert_eq!(form.body["expires_in"], 3600);
    assert_eq!(form.body["scope"], "devices users");

    let basic = h
        .send(
            h.http
                .post(h.url("/v1/auth/token"))
                .basic_auth(&t.client_id, Some(&t.secret))
                .form(&[("grant_type", "client_credentials")]),
        )
        .await;
    assert_eq!(basic.status, 200, "{}", basic.body);
    assert!(basic.body["access_token"].is_string());
}

#[tokio::test]
async fn token_request_errors() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let cases = [
        (
            json!({"client_id": t.client_id, "client_secret": t.secret}),
            400,
            "invalid_request",
        ),
        (
            json!({"grant_type": "password", "client_id": t.client_id, "client_secret": t.secret}),
            400,
            "unsupported_grant_type",
        ),
        (
            json!({"grant_type": "client_credentials", "client_secret": t.secret}),
            400,
            "invalid_request",
        ),
        (
            json!({"grant_type": "client_credentials", "client_id": t.client_id}),
            400,
            "invalid_request",
        ),
        (
            json!({"grant_type": "client_credentials", "client_id": t.client_id, "client_secret": "wrong"}),
            401,
            "invalid_client",
        ),
        (
            json!({"grant_type": "client_credentials", "client_id": "6d2b9d0c-8a53-4bb1-9d0f-8f2f1f7f0c11", "client_secret": t.secret}),
            401,
            "invalid_client",
        ),
        (
            json!({"grant_type": "client_credentials", "client_id": t.client_id, "client_secret": t.secret, "scope": "admin"}),
            400,
            "invalid_scope",
        ),
    ];
    for (body, status, error) in cases {
        let r = h
            .call(Method::POST, "/v1/auth/token", None, Some(body.clone()))
            .await;
        assert_eq!(r.status, status, "{body} -> {}", r.body);
        assert_eq!(r.body["error"], error, "{body}");
        assert_eq!(r.body["success"], false);
        assert!(r.body["message"].is_string());
    }
    let malformed = h
        .send(
            h.http
                .post(h.url("/v1/auth/token"))
                .header("content-type", "application/json")
                .body("{\"grant_type\":"),
        )
        .await;
    assert_eq!(malformed.status, 400);
    let basic_wrong = h
        .send(
            h.http
                .post(h.url("/v1/auth/token"))
                .basic_auth(&t.client_id, Some("nope"))
                .form(&[("grant_type", "client_credentials")]),
        )
        .await;
    assert_eq!(basic_wrong.status, 401);
    assert!(basic_wrong.headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn forged_tampered_and_expired_tokens_are_rejected() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    assert_eq!(h.get("/v1/devices", &t.token).await.status, 200);
    assert_eq!(
        h.call(Method::GET, "/v1/devices", None, None).await.status,
        401
    );
    assert_eq!(h.get("/v1/devices", "not-a-token").await.status, 401);

    let (header, mut claims) = token_parts(&t.token);
    let signature = t.token.rsplit('.').next().unwrap();
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());

    // Same signature, altered claims.
    claims["tenant"] = json!("00000000-0000-0000-0000-000000000000");
    let tampered = format!("{}.{}.{}", enc(&header), enc(&claims), signature);
    assert_eq!(h.get("/v1/devices", &tampered).await.status, 401);

    // One bit of the signature flipped.
    let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
    sig[0] ^= 1;
    let (h64, c64, _) = {
        let mut p = t.token.split('.');
        (p.next().unwrap(), p.next().unwrap(), p.next().unwrap())
    };
    let flipped = format!("{h64}.{c64}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(h.get("/v1/devices", &flipped).await.status, 401);

    // alg: none.
    let (_, original_claims) = token_parts(&t.token);
    let none = format!(
        "{}.{}.",
        enc(&json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]})),
        enc(&original_claims)
    );
    assert_eq!(h.get("/v1/devices", &none).await.status, 401);

    // Properly signed with the server's own key, but expired.
    let der = h.signing_key_der().await;
    let key = jsonwebtoken::EncodingKey::from_ed_der(&der);
    let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    jwt_header.kid = header["kid"].as_str().map(str::to_owned);
    jwt_header.typ = Some("at+jwt".to_owned());
    let now = original_claims["iat"].as_i64().unwrap();
    let mut expired_claims = original_claims.clone();
    expired_claims["iat"] = json!(now - 7200);
    expired_claims["exp"] = json!(now - 3600);
    let expired = jsonwebtoken::encode(&jwt_header, &expired_claims, &key).unwrap();
    assert_eq!(h.get("/v1/devices", &expired).await.status, 401);
    // The same key and claims with a live expiry are accepted: the rejection above is the expiry.
    expired_claims["exp"] = json!(now + 600);
    let fresh = jsonwebtoken::encode(&jwt_header, &expired_claims, &key).unwrap();
    assert_eq!(h.get("/v1/devices", &fresh).await.status, 200);
    let _ = STANDARD;
}

#[tokio::test]
async fn missing_scope_is_403_and_deleted_client_is_401_at_once() {
    let h = Harness::start().await;
    let t = h.tenant_with_scopes(Some("users")).await;
    let r = h.get("/v1/devices", &t.token).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["code"], "insufficient_scope");
    assert_eq!(h.get("/v1/users", &t.token).await.status, 200);

    let operators = h.operators().await;
    operators
        .delete_client(OperatorActor::CommandLine, t.client_id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(h.get("/v1/users", &t.token).await.status, 401);
}

#[tokio::test]
async fn rotation_keeps_old_secret_until_revoked() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let operators = h.operators().await;
    let id = t.client_id.parse().unwrap();
    let new_secret = operators
        .rotate_client(OperatorActor::CommandLine, id)
        .await
        .unwrap();
    assert_ne!(new_secret, t.secret);
    h.token(&t.client_id, &t.secret).await;
    h.token(&t.client_id, &new_secret).await;
    // Tokens issued before the rotation keep working.
    assert_eq!(h.get("/v1/devices", &t.token).await.status, 200);
    operators
        .revoke_old_secret(OperatorActor::CommandLine, id)
        .await
        .unwrap();
    let old = h
        .call(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"grant_type": "client_credentials", "client_id": t.client_id, "client_secret": t.secret})),
        )
        .await;
    assert_eq!(old.status, 401);
    h.token(&t.client_id, &new_secret).await;
}
