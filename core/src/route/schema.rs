//! The route tree's schema (config `route`): [`RouteConfig`], tagged by `"type"`, nested freely.
//!
//! ```json
//! { "type": "failover",
//!   "children": ["main", { "type": "gutter", "pool": "gutter", "max_ttl": 10 }] }
//! ```
//!
//! A route written as a string names a pool. Errors name the path of the offending key
//! (`route.children[1].max_tries: invalid type …`); references to pools are checked by
//! [`RouteConfig::check`] (`route.children[1].pool: unknown pool "x"`).
//!
//! Each route file owns its part: a `Config` struct (serde, `deny_unknown_fields`) that
//! implements [`RouteSpec`] (its children, the pools it names, its rules, its `build`). This
//! module holds only what is common to all of them: the `"type"` dispatch, the path-named
//! errors, the tree walks, and the [`Builder`] that `build` gets. The list of route types is
//! the `routes!` table in `route/mod.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::error::{Error, Reason, Result};

use super::pool::PoolRoute;
use super::{Route, RouteConfig};

/// What a route file's `Config` tells the schema and the builder.
pub trait RouteSpec: fmt::Debug {
    /// The direct children with their path suffixes (`.children[1]`, `.cold`, …).
    fn children(&self) -> Vec<(String, &RouteConfig)> {
        Vec::new()
    }

    /// Pools this route names directly (not through children), with the key that names them.
    fn pools(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }

    /// Rules of this route's own fields, checked when the config is read; errors name the
    /// field (see [`invalid_field`]). Pool names and the children are checked by the caller.
    fn check(&self, path: &str) -> Result<(), String> {
        let _ = path;
        Ok(())
    }

    /// Build the route found at `path`, its children through [`Builder::child`]. Rules that
    /// need the built pools (server counts, pool leaves) are checked here.
    fn build(&self, b: &mut Builder<'_>, path: &str) -> Result<Arc<dyn Route>>;
}

/// What routes need while being built.
#[derive(Debug)]
pub struct Builder<'a> {
    /// Pools by name.
    pub pools: &'a BTreeMap<String, Arc<PoolRoute>>,
    /// Background work runs on the caller's thread (`health.background: false`).
    pub inline: bool,
    /// Wrap routes with children in [`super::timed::Timed`] (`stats.route_latency`).
    pub timed: bool,
}

impl Builder<'_> {
    /// The pool `name`, named by the route at `path` (the error names `path.pool`).
    pub fn pool(&self, name: &str, path: &str) -> Result<Arc<PoolRoute>> {
        self.pools
            .get(name)
            .cloned()
            .ok_or_else(|| invalid(&format!("{path}.pool"), format!("unknown pool \"{name}\"")))
    }

    /// Build `cfg`, found at `path`: the route file's [`RouteSpec::build`].
    pub fn route(&mut self, cfg: &RouteConfig, path: &str) -> Result<Arc<dyn Route>> {
        let route = cfg.spec().build(self, path)?;
        Ok(if self.timed {
            super::timed::Timed::wrap(route)
        } else {
            route
        })
    }

    /// Build the child `cfg` of the route at `path`, found at `path` + `suffix` (`.cold`).
    pub fn child(&mut self, cfg: &RouteConfig, path: &str, suffix: &str) -> Result<Arc<dyn Route>> {
        self.route(cfg, &format!("{path}{suffix}"))
    }

    /// Build every child of `spec` (the route at `path`), in order.
    pub fn children(&mut self, spec: &dyn RouteSpec, path: &str) -> Result<Vec<Arc<dyn Route>>> {
        spec.children()
            .into_iter()
            .map(|(suffix, c)| self.child(c, path, &suffix))
            .collect()
    }
}

/// A config error at `path` (`route.children[1]: …`).
pub fn invalid(path: &str, msg: impl std::fmt::Display) -> Error {
    Error::with_detail(Reason::InvalidConfig, format!("{path}: {msg}"))
}

/// Declares [`RouteConfig`] from the table of route types in `route/mod.rs`, one row per route:
/// `Variant(module::Config) = "type name",`. The row is the route's whole registration: the
/// enum variant, the `"type"` name the parser and the stats use, the dispatch to its
/// [`RouteSpec`].
macro_rules! routes {
    ($($variant:ident($module:ident::Config) = $name:literal,)+) => {
        /// Where requests go: one variant per route type, holding that route file's `Config`
        /// (see the table in [`crate::route`]). Written as a string, it names a pool.
        #[derive(Clone, Debug, PartialEq)]
        #[non_exhaustive]
        pub enum RouteConfig {
            $(
                #[doc = concat!("`\"type\": \"", $name, "\"`: see [`", stringify!($module), "`].")]
                $variant($module::Config),
            )+
        }

        impl RouteConfig {
            /// Every route type name, in table order.
            pub(crate) const TYPES: &'static [&'static str] = &[$($name),+];

            /// The route's `"type"` name.
            pub const fn type_name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $name,)+
                }
            }

            /// The route file's config behind this variant.
            pub fn spec(&self) -> &dyn $crate::route::schema::RouteSpec {
                match self {
                    $(Self::$variant(c) => c,)+
                }
            }

            /// The route of type `ty` from the object's other fields; `None`: no such type.
            fn parse_typed<E: serde::de::Error>(
                ty: &str,
                fields: serde_json::Value,
            ) -> Option<Result<Self, E>> {
                Some(match ty {
                    $($name => $crate::route::schema::typed(fields).map(Self::$variant),)+
                    _ => return None,
                })
            }
        }
    };
}
pub(crate) use routes;

impl RouteConfig {
    /// A plain `pool` route (what a route written as a string means).
    pub fn pool(name: impl Into<String>) -> RouteConfig {
        RouteConfig::Pool(super::pool::Config { pool: name.into() })
    }

    /// The direct children with their path suffixes (`.children[1]`, `.cold`, …).
    pub fn children(&self) -> Vec<(String, &RouteConfig)> {
        self.spec().children()
    }

    /// Check pool references and cross-field rules of the whole tree; errors start with
    /// `path` (`route.children[1].pool: unknown pool "x"`).
    pub fn check(&self, path: &str, pool_exists: &dyn Fn(&str) -> bool) -> Result<(), String> {
        let spec = self.spec();
        for (key, pool) in spec.pools() {
            if !pool_exists(pool) {
                return Err(format!("{path}.{key}: unknown pool \"{pool}\""));
            }
        }
        spec.check(path)?;
        for (suffix, child) in spec.children() {
            child.check(&format!("{path}{suffix}"), pool_exists)?;
        }
        Ok(())
    }

    /// Every pool named anywhere in the tree.
    pub fn pools(&self, out: &mut Vec<String>) {
        for (_, p) in self.spec().pools() {
            if !out.iter().any(|o| o == p) {
                out.push(p.to_string());
            }
        }
        for (_, c) in self.children() {
            c.pools(out);
        }
    }
}

/// A rule of a route's field broken: `path.key: why`, as [`RouteSpec::check`] returns it.
pub fn invalid_field(path: &str, key: &str, why: &str) -> Result<(), String> {
    Err(format!("{path}.{key}: {why}"))
}

impl fmt::Display for RouteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteConfig::Pool(p) => write!(f, "pool \"{}\"", p.pool),
            other => {
                write!(f, "{}(", other.type_name())?;
                let children = other.children();
                let pools = other.spec().pools();
                let mut first = true;
                for (k, p) in pools {
                    write!(f, "{k}=\"{p}\"")?;
                    first = false;
                }
                for (suffix, c) in children {
                    if !first {
                        f.write_str(", ")?;
                    }
                    first = false;
                    write!(f, "{}={c}", suffix.trim_start_matches('.'))?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Marks an error message that carries the path inside a nested route, so the outer path
/// and the inner one join into one (`route.children[1].max_tries: …`); see `config::path_error`.
pub(crate) const NESTED: char = '\u{1}';

/// `path` + `msg` as a nested-route error message.
fn nested(path: &str, msg: &str) -> String {
    // The inner message may itself be nested (a route inside a route): join the paths.
    let (inner_path, inner_msg) = split_nested(msg);
    let joined = match (path, inner_path) {
        ("" | ".", p) => p.to_string(),
        (p, "") => p.to_string(),
        (p, q) if q.starts_with('[') => format!("{p}{q}"),
        (p, q) => format!("{p}.{q}"),
    };
    format!("{NESTED}{joined}{NESTED}{inner_msg}")
}

/// Split a nested message into (path, message); ("", msg) when it is not nested.
pub(crate) fn split_nested(msg: &str) -> (&str, &str) {
    if let Some(rest) = msg.strip_prefix(NESTED)
        && let Some((p, m)) = rest.split_once(NESTED)
    {
        return (p, m);
    }
    ("", msg)
}

/// Deserialize `T` from a buffered JSON value, keeping the path of the error.
pub(crate) fn typed<T: for<'de> Deserialize<'de>, E: de::Error>(v: Value) -> Result<T, E> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        E::custom(nested(&path, &msg))
    })
}

impl<'de> Deserialize<'de> for RouteConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RouteConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pool name or a route object such as {\"type\": \"pool\", \"pool\": \"main\"}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RouteConfig, E> {
                Ok(RouteConfig::pool(s))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RouteConfig, A::Error> {
                // Buffer the object: "type" may come after the fields it governs.
                let mut fields = serde_json::Map::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    fields.insert(k, v);
                }
                let types = || RouteConfig::TYPES.join(", ");
                let ty = match fields.remove("type") {
                    Some(Value::String(t)) => t,
                    Some(_) => return Err(de::Error::custom(nested("type", "expected a string"))),
                    None => {
                        return Err(de::Error::custom(format!(
                            "a route object needs \"type\": one of {}",
                            types()
                        )));
                    }
                };
                RouteConfig::parse_typed(&ty, Value::Object(fields)).unwrap_or_else(|| {
                    Err(de::Error::custom(nested(
                        "type",
                        &format!("unknown route type \"{ty}\"; expected one of {}", types()),
                    )))
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(json: &str) -> String {
        Config::from_json(json)
            .unwrap_err()
            .detail()
            .unwrap_or("")
            .to_string()
    }

    const POOLS: &str =
        r#""pools": {"a": {"servers": ["127.0.0.1:1"]}, "b": {"servers": ["127.0.0.1:2"]}}"#;

    fn with_route(route: &str) -> String {
        format!("{{{POOLS}, \"route\": {route}}}")
    }

    #[test]
    fn nested_routes_parse() {
        let c = Config::from_json(&with_route(
            r#"{"type": "failover", "max_tries": 2, "failover_on": ["timeout", "tko"],
                "children": ["a", {"type": "gutter", "pool": "b", "max_ttl": 10}]}"#,
        ))
        .unwrap();
        assert_eq!(c.route.type_name(), "failover");
        assert_eq!(c.route.children().len(), 2);
        let c = Config::from_json(&with_route(
            r#"{"type": "prefix", "routes": {"user:": {"type": "replicated", "pool": "a", "replicas": 1,
                "read": "hedged", "hedge_after_ms": 5}}, "default": {"children": ["a", "b"], "type": "replicated"}}"#,
        ))
        .unwrap();
        assert_eq!(c.route.type_name(), "prefix");
    }

    #[test]
    fn errors_name_the_nested_path() {
        assert_eq!(
            err(&with_route(
                r#"{"type": "failover", "children": ["a", {"type": "pool", "pool": "x"}]}"#
            )),
            "route.children[1].pool: unknown pool \"x\""
        );
        let e = err(&with_route(
            r#"{"type": "failover", "children": ["a", {"type": "failover", "children": ["b"], "max_tries": "two"}]}"#,
        ));
        assert!(
            e.starts_with("route.children[1].max_tries: invalid type"),
            "{e}"
        );
        let e = err(&with_route(
            r#"{"type": "shadow", "route": "a", "shadow": "b", "fractoin": 1}"#,
        ));
        assert!(
            e.starts_with("route.fractoin: unknown field `fractoin`"),
            "{e}"
        );
        let e = err(&with_route(r#"{"type": "nope"}"#));
        assert!(
            e.starts_with("route.type: unknown route type \"nope\""),
            "{e}"
        );
        let e = err(&with_route(
            r#"{"type": "failover", "children": ["a"], "failover_on": ["slow"]}"#,
        ));
        assert!(
            e.starts_with("route.failover_on: unknown reason \"slow\""),
            "{e}"
        );
        let e = err(&with_route(r#"{"type": "replicated", "pool": "a"}"#));
        assert_eq!(
            e,
            "route.replicas: with \"pool\", give \"replicas\" (at least 1)"
        );
        let e = err(&with_route(r#"{"type": "operation", "get": "a"}"#));
        assert!(e.starts_with("route.default: give \"default\""), "{e}");
        let e = err(&with_route(
            r#"{"type": "migrate", "from": "a", "to": "b", "phase": "halfway"}"#,
        ));
        assert!(
            e.starts_with("route.phase: unknown variant `halfway`"),
            "{e}"
        );
    }

    #[test]
    fn toml_routes_parse() {
        let c = Config::from_toml(
            "[pools.a]\nservers = [\"127.0.0.1:1\"]\n[pools.b]\nservers = [\"127.0.0.1:2\"]\n\
             [route]\ntype = \"migrate\"\nfrom = \"a\"\nto = \"b\"\nphase = \"dual_write\"\n",
        )
        .unwrap();
        assert_eq!(c.route.type_name(), "migrate");
    }
}
