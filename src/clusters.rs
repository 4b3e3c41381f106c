//! The cluster registry: every configured cluster by name, each with its own pool, token
//! minter, executor and access mode.
//!
//! A tool call names its cluster (or takes the default) and is resolved here once, in
//! `Toolbox::call`, into its `Call`; handlers then see one executor and one access mode as
//! if the server had a single cluster. The single-cluster configuration (the reference's
//! flags) is a registry of one, so there is one code path. A caller's allowed clusters
//! (`Caller::clusters`, from an HTTP credential) are enforced here, and a name outside
//! them is refused exactly like a name that is not configured, so a credential cannot
//! learn which other clusters exist.

use std::sync::Arc;

use crate::config::{ClusterConfig, Config, Database};
use crate::connection::{pool, tls, token::TokenMinter};
use crate::executor::{Executor, Rewriter};
use crate::policy::Access;
use crate::tools::Caller;

/// One configured cluster.
pub struct Cluster {
    pub name: String,
    /// Where it is and who connects (the profile is never shown to agents).
    pub database: Database,
    /// The most a call may do on it; a caller's ceiling can lower it, never raise it.
    pub access: Access,
    pub executor: Arc<Executor>,
    /// Which of its relations carry the tenant column (tenant isolation), cached.
    pub tenant_map: crate::catalog::tenant_map::TenantMap,
}

impl Cluster {
    /// The access mode a call of `caller` gets on this cluster: the lower of the two.
    pub fn access_for(&self, caller: &Caller) -> Access {
        lower(self.access, caller.access)
    }
}

/// The lower of two access modes.
pub fn lower(a: Access, b: Access) -> Access {
    match (a, b) {
        (Access::ReadWrite, Access::ReadWrite) => Access::ReadWrite,
        _ => Access::ReadOnly,
    }
}

/// Every configured cluster, sorted by name, and the default's name.
#[derive(Default)]
pub struct Clusters {
    entries: Vec<Arc<Cluster>>,
    default: String,
}

/// What the `--local` sandbox puts in place of IAM: its password and its DSQL emulation.
pub struct Local {
    pub minter: TokenMinter,
    pub rewriter: Rewriter,
}

impl Clusters {
    /// No cluster: database tools answer "Database not configured".
    pub fn empty() -> Clusters {
        Clusters::default()
    }

    /// Builds one pool, minter and executor per configured cluster (no connection is
    /// opened yet). All executors share one result budget: it is process-wide.
    /// `local` (the sandbox) applies to the only cluster there is then.
    pub fn build(
        config: &Config,
        mut local: Option<Local>,
    ) -> Result<Clusters, (String, tls::TlsError)> {
        let mut entries: Vec<Arc<Cluster>> = Vec::with_capacity(config.clusters.len());
        for c in &config.clusters {
            let executor = Self::executor(c, config, local.take(), entries.first())
                .map_err(|e| (c.name.clone(), e))?;
            entries.push(Arc::new(Cluster {
                name: c.name.clone(),
                database: c.database.clone(),
                access: c.access,
                executor: Arc::new(executor),
                tenant_map: Default::default(),
            }));
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Clusters {
            entries,
            default: config.default_cluster.clone(),
        })
    }

    fn executor(
        c: &ClusterConfig,
        config: &Config,
        local: Option<Local>,
        first: Option<&Arc<Cluster>>,
    ) -> Result<Executor, tls::TlsError> {
        let (manager, rewriter) = match local {
            Some(local) => (
                pool::Manager::with_minter(&c.database, c.access, local.minter)?,
                Some(local.rewriter),
            ),
            None => (pool::Manager::new(&c.database, c.access)?, None),
        };
        let pool = pool::build_sized(manager, c.pool_size)?;
        let mut executor = Executor::new(pool, c.limits, config.retry);
        if let Some(rewriter) = rewriter {
            executor = executor.with_rewriter(rewriter);
        }
        if let Some(first) = first {
            executor = executor.sharing_budget_of(&first.executor);
        }
        Ok(executor)
    }

    /// A registry of given clusters (tests, and callers that build executors themselves).
    pub fn from_entries(entries: Vec<Cluster>, default: &str) -> Clusters {
        let mut entries: Vec<Arc<Cluster>> = entries.into_iter().map(Arc::new).collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Clusters {
            entries,
            default: default.to_owned(),
        }
    }

    /// Whether more than one cluster is configured: then database tools take a `cluster`
    /// argument, resources name their cluster and `list_clusters` is offered. With one,
    /// the tool surface is exactly the reference's.
    pub fn several(&self) -> bool {
        self.entries.len() > 1
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every cluster, by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.entries.iter()
    }

    /// The name of the cluster a call uses when it names none.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// The clusters `caller` may use, by name.
    pub fn visible<'a>(&'a self, caller: &'a Caller) -> impl Iterator<Item = &'a Arc<Cluster>> {
        self.entries
            .iter()
            .filter(move |c| allowed(caller, &c.name))
    }

    /// The cluster a call runs on: `requested` (a `cluster` argument) or the default.
    /// `Ok(None)` when no cluster is configured at all (the tools then say so in the
    /// reference's words). A name that is not configured, or that the caller may not use,
    /// is refused with the names the caller may use, and nothing else.
    pub fn resolve(
        &self,
        requested: Option<&str>,
        caller: &Caller,
    ) -> Result<Option<&Arc<Cluster>>, String> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        let found = match requested {
            Some(name) => self.entries.iter().find(|c| c.name == name),
            None => self.entries.iter().find(|c| c.name == self.default),
        }
        .filter(|c| allowed(caller, &c.name));
        if let Some(cluster) = found {
            return Ok(Some(cluster));
        }
        let names: Vec<&str> = self.visible(caller).map(|c| c.name.as_str()).collect();
        let known = if names.is_empty() {
            "this credential may use none".to_owned()
        } else {
            format!("configured: {}", names.join(", "))
        };
        Err(match requested {
            Some(name) => format!(
                "unknown cluster \"{}\" ({known}). list_clusters shows each with its endpoint and mode.",
                crate::tools::names::preview(name)
            ),
            None => format!(
                "this call names no cluster and the default one is not available to this credential: pass `cluster` ({known})"
            ),
        })
    }
}

fn allowed(caller: &Caller, name: &str) -> bool {
    caller
        .clusters
        .as_ref()
        .is_none_or(|names| names.iter().any(|n| n == name))
}
