//! IAM authentication tokens: one freshly minted token for every new connection.
//!
//! A DSQL password is a SigV4-presigned `GET https://<host>/?Action=DbConnect[Admin]`
//! with the scheme stripped. Signing is local (no network), so minting per connection is
//! cheap and means an expired token can never be reused. The token is only checked while
//! a connection is set up; an established connection outlives it.
//!
//! Tokens are secrets: they never appear in a log line, an error message or a `Debug`.
//!
//! The `--local` sandbox has no IAM: its minter ([`TokenMinter::with_password`]) hands out
//! the sandbox's per-run password instead, through the same path, so the pool and `check`
//! need not know which kind of secret they send.

use std::fmt;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dsql::auth_token::{AuthTokenGenerator, Config as TokenConfig};
use tokio::sync::OnceCell;

use super::error::error_chain;
use crate::config::Database;

/// How long a minted token stays valid for *connecting*. Short, because it is used at once.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The IAM action a token is signed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `dsql:DbConnectAdmin`, for the built-in `admin` role.
    DbConnectAdmin,
    /// `dsql:DbConnect`, for every custom role.
    DbConnect,
}

impl Action {
    pub fn for_user(user: &str) -> Action {
        if user == "admin" {
            Action::DbConnectAdmin
        } else {
            Action::DbConnect
        }
    }
}

/// A token; `Debug` and `Display` are redacted so it cannot leak through formatting.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A password used in place of a token (the sandbox's per-run secret).
    pub fn from_password(password: String) -> Token {
        Token(password)
    }

    /// The secret itself, only to hand to the PostgreSQL connection as its password.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Why a token could not be minted. Carries the credential chain's message, never secrets.
#[derive(Debug, thiserror::Error)]
#[error("could not create an IAM auth token ({action:?}): {message}")]
pub struct TokenError {
    pub action: Action,
    pub message: String,
}

/// Mints tokens for one endpoint, user and region with the standard credential chain
/// (or, for the sandbox, hands out its fixed password).
pub struct TokenMinter {
    endpoint: String,
    region: String,
    profile: Option<String>,
    action: Action,
    /// Loaded on first use: start-up stays instant and reads no AWS files.
    sdk: OnceCell<SdkConfig>,
    /// `Some`: no IAM; every connection sends this password.
    password: Option<Token>,
}

impl TokenMinter {
    pub fn new(db: &Database) -> TokenMinter {
        TokenMinter {
            endpoint: db.endpoint.clone(),
            region: db.region.clone(),
            profile: db.profile.clone(),
            action: Action::for_user(&db.user),
            sdk: OnceCell::new(),
            password: None,
        }
    }

    /// A "minter" that sends `password` instead of an IAM token and needs no AWS
    /// credentials: the `--local` sandbox's per-run secret.
    pub fn with_password(db: &Database, password: Token) -> TokenMinter {
        TokenMinter {
            password: Some(password),
            ..TokenMinter::new(db)
        }
    }

    /// Whether this minter sends a fixed password instead of IAM tokens.
    pub fn uses_password(&self) -> bool {
        self.password.is_some()
    }

    /// Does ahead of time what the first `mint` would pay for (loading the SDK
    /// configuration); nothing for a password.
    pub async fn warm(&self) {
        if self.password.is_none() {
            self.sdk_config().await;
        }
    }

    /// A minter with a given SDK configuration (credentials, region, time source)
    /// instead of the standard chain.
    pub fn with_sdk_config(db: &Database, sdk: SdkConfig) -> TokenMinter {
        let minter = TokenMinter::new(db);
        minter
            .sdk
            .set(sdk)
            .expect("a new minter has no SDK configuration yet");
        minter
    }

    pub fn action(&self) -> Action {
        self.action
    }

    /// The SDK configuration tokens are signed with (loaded on first use).
    pub async fn sdk_config(&self) -> &SdkConfig {
        self.sdk
            .get_or_init(|| async {
                let behavior = BehaviorVersion::latest();
                let mut loader =
                    aws_config::defaults(behavior).region(Region::new(self.region.clone()));
                if let Some(client) = super::sdk_http::LazyRoots::default_client(behavior) {
                    loader = loader.http_client(client);
                }
                if let Some(profile) = &self.profile {
                    loader = loader.profile_name(profile);
                }
                // The loader's future is large (several MiB in debug builds): keep it on the heap.
                Box::pin(loader.load()).await
            })
            .await
    }

    /// Signs a new token (or hands out the sandbox's password). Fails when no credentials
    /// can be found.
    pub async fn mint(&self) -> Result<Token, TokenError> {
        if let Some(password) = &self.password {
            return Ok(password.clone());
        }
        let err = |message: String| TokenError {
            action: self.action,
            message,
        };
        let sdk = self.sdk_config().await;
        let generator = AuthTokenGenerator::new(
            TokenConfig::builder()
                .hostname(&self.endpoint)
                .region(Region::new(self.region.clone()))
                .expires_in(TOKEN_LIFETIME.as_secs())
                .build()
                .map_err(|e| err(e.to_string()))?,
        );
        let token = match self.action {
            Action::DbConnectAdmin => generator.db_connect_admin_auth_token(sdk).await,
            Action::DbConnect => generator.db_connect_auth_token(sdk).await,
        }
        .map_err(|e| err(error_chain(e.as_ref())))?;
        Ok(Token(token.as_str().to_owned()))
    }
}
