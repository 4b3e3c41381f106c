//! The bearer-token file of `--auth-tokens` (issue 13): who may call a shared server, and
//! what each token may do.
//!
//! The file holds SHA-256 hashes, never tokens, so reading it (or a backup of it) does not
//! give access. A presented token is hashed and compared with *every* entry in constant
//! time (`subtle`), so neither the comparison nor the position of a match tells an attacker
//! anything. The file is re-read on SIGHUP; a file that no longer parses keeps the last
//! good set and logs why (a typo must not lock everybody out, nor let anybody in).
//!
//! ```toml
//! [[token]]
//! name = "ci"                      # optional label for logs; default: the hash's first 8 hex
//! sha256 = "<64 hex digits>"       # printf %s "$TOKEN" | sha256sum
//! access = "read"                  # or "write"
//! clusters = ["prod"]              # optional: these clusters only (all when absent)
//! tenant = "acme"                  # optional: bound to this tenant (tenant isolation)
//! ```

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::policy::Access;
use crate::tools::{Caller, Credential};

/// One `[[token]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: Option<String>,
    sha256: String,
    access: String,
    clusters: Option<Vec<String>>,
    tenant: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<Entry>,
}

/// The checked tokens: a hash and the credential it unlocks.
#[derive(Debug, Clone)]
pub struct TokenSet {
    entries: Vec<([u8; 32], Credential)>,
}

impl TokenSet {
    /// Reads and checks the file. `config` supplies the known cluster names (a token naming
    /// an unknown cluster is an error, not a silent no-access) and the server's tenant (a
    /// token without its own tenant inherits it, so it cannot escape `--tenant`).
    pub fn load(path: &Path, config: &Config) -> Result<TokenSet, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--auth-tokens {}: cannot be read: {e}", path.display()))?;
        Self::parse(&text, config).map_err(|e| format!("--auth-tokens {}: {e}", path.display()))
    }

    fn parse(text: &str, config: &Config) -> Result<TokenSet, String> {
        let file: File = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let known: Vec<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
        let mut entries = Vec::with_capacity(file.token.len());
        for (i, e) in file.token.into_iter().enumerate() {
            let at = format!(
                "token {} ({})",
                i + 1,
                e.name.as_deref().unwrap_or("no name")
            );
            let hex = e.sha256.trim().to_ascii_lowercase();
            let mut hash = [0u8; 32];
            if hex.len() != 64 || hex::decode_to_slice(&hex, &mut hash).is_err() {
                return Err(format!(
                    "{at}: sha256 must be 64 hex digits (the SHA-256 of the token: printf %s \"$TOKEN\" | sha256sum)"
                ));
            }
            let access = match e.access.as_str() {
                "read" => Access::ReadOnly,
                "write" => Access::ReadWrite,
                other => {
                    return Err(format!(
                        "{at}: access must be \"read\" or \"write\", not {other:?}"
                    ));
                }
            };
            if let Some(unknown) = e
                .clusters
                .iter()
                .flatten()
                .find(|c| !known.contains(&c.as_str()))
            {
                return Err(format!(
                    "{at}: unknown cluster {unknown:?} (configured: {})",
                    known.join(", ")
                ));
            }
            if e.tenant
                .as_deref()
                .is_some_and(|t| t.is_empty() || t.contains('\0'))
            {
                return Err(format!(
                    "{at}: tenant must be a non-empty value without NUL bytes"
                ));
            }
            if entries.iter().any(|(h, _)| *h == hash) {
                return Err(format!("{at}: the same hash appears twice"));
            }
            let id = e.name.unwrap_or_else(|| format!("token:{}", &hex[..8]));
            let caller = Caller {
                access,
                tenant: e.tenant.or_else(|| config.tenant.clone()),
                clusters: e.clusters,
            };
            entries.push((
                hash,
                Credential {
                    id: Arc::from(id),
                    caller: Arc::new(caller),
                },
            ));
        }
        Ok(TokenSet { entries })
    }

    /// The credential `token` unlocks. Every entry is compared, in constant time.
    pub fn find(&self, token: &str) -> Option<Credential> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (hash, credential) in &self.entries {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(credential.clone());
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Args, Env};
    use clap::Parser;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["t"];
        all.extend_from_slice(args);
        Config::from_args(Args::try_parse_from(all).unwrap(), &Env::default()).unwrap()
    }

    fn sha(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    #[test]
    fn a_token_unlocks_its_entry_and_nothing_else() {
        let c = config(&[
            "--cluster_endpoint",
            "a.dsql.us-east-1.on.aws",
            "--database_user",
            "admin",
        ]);
        let text = format!(
            "[[token]]\nname = \"ci\"\nsha256 = \"{}\"\naccess = \"read\"\n\n[[token]]\nsha256 = \"{}\"\naccess = \"write\"\nclusters = [\"default\"]\ntenant = \"acme\"\n",
            sha("s3cret-read"),
            sha("s3cret-write").to_uppercase()
        );
        let set = TokenSet::parse(&text, &c).unwrap();
        assert_eq!(set.len(), 2);
        let read = set.find("s3cret-read").unwrap();
        assert_eq!(&*read.id, "ci");
        assert_eq!(
            *read.caller,
            Caller {
                access: Access::ReadOnly,
                tenant: None,
                clusters: None
            }
        );
        let write = set.find("s3cret-write").unwrap();
        assert_eq!(&*write.id, format!("token:{}", &sha("s3cret-write")[..8]));
        assert_eq!(
            *write.caller,
            Caller {
                access: Access::ReadWrite,
                tenant: Some("acme".into()),
                clusters: Some(vec!["default".into()])
            }
        );
        assert!(set.find("s3cret").is_none());
        assert!(set.find("").is_none());
    }

    #[test]
    fn mistakes_in_the_file_are_named() {
        let c = config(&[
            "--cluster_endpoint",
            "a.dsql.us-east-1.on.aws",
            "--database_user",
            "admin",
        ]);
        let err = |t: &str| TokenSet::parse(t, &c).unwrap_err();
        assert_eq!(
            err("[[token]]\nsha256 = \"abc\"\naccess = \"read\"\n"),
            "token 1 (no name): sha256 must be 64 hex digits (the SHA-256 of the token: printf %s \"$TOKEN\" | sha256sum)"
        );
        let h = sha("x");
        assert_eq!(
            err(&format!(
                "[[token]]\nname = \"n\"\nsha256 = \"{h}\"\naccess = \"admin\"\n"
            )),
            "token 1 (n): access must be \"read\" or \"write\", not \"admin\""
        );
        assert_eq!(
            err(&format!(
                "[[token]]\nsha256 = \"{h}\"\naccess = \"read\"\nclusters = [\"prod\"]\n"
            )),
            "token 1 (no name): unknown cluster \"prod\" (configured: default)"
        );
        assert_eq!(
            err(&format!(
                "[[token]]\nsha256 = \"{h}\"\naccess = \"read\"\n[[token]]\nsha256 = \"{h}\"\naccess = \"write\"\n"
            )),
            "token 2 (no name): the same hash appears twice"
        );
        assert!(err("[[token]]\nsha256 = 1\n").contains("invalid type"));
        assert!(
            err(&format!(
                "[[token]]\nsha256 = \"{h}\"\naccess = \"read\"\nrole = \"x\"\n"
            ))
            .contains("unknown field")
        );
    }

    #[test]
    fn a_token_without_a_tenant_inherits_the_servers() {
        let c = config(&[
            "--cluster_endpoint",
            "a.dsql.us-east-1.on.aws",
            "--database_user",
            "admin",
            "--tenant",
            "t1",
        ]);
        let set = TokenSet::parse(
            &format!("[[token]]\nsha256 = \"{}\"\naccess = \"read\"\n", sha("k")),
            &c,
        )
        .unwrap();
        assert_eq!(set.find("k").unwrap().caller.tenant.as_deref(), Some("t1"));
    }
}
