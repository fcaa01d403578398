//! Bake files in HCL (`docker-bake.hcl`) and JSON (`docker-bake.json`), evaluated as buildx
//! evaluates them:
//!
//! - `variable "NAME" { default = EXPR }`: a variable of the environment of that name
//!   overrides the default (parsed as a bool or number when the default is one); top-level
//!   attributes `NAME = EXPR` are variables too. Variables may use each other and functions.
//! - `function "NAME" { params = [a, b]  variadic_params = rest  result = EXPR }`.
//! - `target "NAME" { ... }` and `group "NAME" { targets = [...] }`, their attributes
//!   evaluated with the variables and functions ([`super::funcs::STDLIB`] and the files'
//!   own). A target defined in several blocks or files is merged, later over earlier.
//!
//! The files are evaluated together: a variable of one file may be used in another. In JSON
//! files every string is a template (`"${TAG}"` interpolates).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate};
use hcl::expr::TemplateExpr;
use hcl::{Block, Body, Expression, Structure, Value};

use super::funcs::{MAX_USER_FUNCS, UserFunc, UserFuncs};
use super::{Definition, Group, Target};

/// Why an HCL or JSON bake file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HclError {
    /// The file does not parse.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The line (1-based; 0 when unknown).
        line: usize,
        /// The column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A block is not what bake allows (a missing label, an unknown block type, a
    /// malformed `function`).
    #[error("{file}: {what}: {reason}")]
    Block {
        /// The file.
        file: PathBuf,
        /// The block (`target "app"`).
        what: String,
        /// Why.
        reason: String,
    },
    /// An expression does not evaluate, or a value is not what the key takes.
    #[error("{file}: {what}: {message}")]
    Eval {
        /// The file.
        file: PathBuf,
        /// What was evaluated (`target "app" attribute tags`, `variable "TAG"`).
        what: String,
        /// Why.
        message: String,
    },
    /// Variables that cannot be evaluated: they use each other in a loop, or use names that
    /// do not exist.
    #[error("variables cannot be evaluated: {names}: {message}")]
    Variables {
        /// The variables.
        names: String,
        /// The first one's error.
        message: String,
    },
    /// More `function` blocks than rbuild takes.
    #[error("{count} function blocks: at most {MAX_USER_FUNCS} are supported")]
    TooManyFunctions {
        /// How many there are.
        count: usize,
    },
}

/// Parses an HCL file, or a JSON file (by its `.json` name) into the same structure.
fn parse(path: &Path, text: &str) -> Result<Body, HclError> {
    if path.extension().and_then(|e| e.to_str()) == Some("json") {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| HclError::Syntax {
                file: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
        return json_body(path, &value);
    }
    hcl::parse(text).map_err(|e| {
        let (line, column, message) = match &e {
            hcl::Error::Parse(p) => (
                p.location().line(),
                p.location().column(),
                p.message().to_string(),
            ),
            other => (0, 0, other.to_string()),
        };
        HclError::Syntax {
            file: path.to_path_buf(),
            line,
            column,
            message,
        }
    })
}

/// A JSON bake file as HCL blocks: `{"variable": {NAME: {...}}, "target": {NAME: {...}},
/// "group": {...}, "function": {...}}`.
fn json_body(path: &Path, value: &serde_json::Value) -> Result<Body, HclError> {
    let bad = |what: &str, reason: &str| HclError::Block {
        file: path.to_path_buf(),
        what: what.to_string(),
        reason: reason.to_string(),
    };
    let top = value
        .as_object()
        .ok_or_else(|| bad("the file", "is not a JSON object"))?;
    let mut body = Vec::new();
    for (kind, blocks) in top {
        let blocks = match blocks.as_object() {
            Some(b) if matches!(kind.as_str(), "variable" | "target" | "group" | "function") => b,
            _ => {
                body.push(Structure::Attribute(hcl::Attribute::new(
                    kind.as_str(),
                    json_expr(blocks),
                )));
                continue;
            }
        };
        for (name, attrs) in blocks {
            let attrs = attrs
                .as_object()
                .ok_or_else(|| bad(&format!("{kind} {name:?}"), "is not a JSON object"))?;
            let mut block = Block::builder(kind.as_str()).add_label(name.as_str());
            for (k, v) in attrs {
                let expr = if kind == "function" && k == "result" {
                    // A function's result is an expression in a string.
                    let src = v.as_str().unwrap_or_default();
                    src.parse::<Expression>()
                        .map_err(|e| bad(&format!("function {name:?}"), &format!("result: {e}")))?
                } else {
                    json_expr(v)
                };
                block = block.add_attribute((k.as_str(), expr));
            }
            body.push(Structure::Block(block.build()));
        }
    }
    Ok(Body(body))
}

/// A JSON value as an expression; strings are templates.
fn json_expr(v: &serde_json::Value) -> Expression {
    match v {
        serde_json::Value::String(s) => {
            Expression::TemplateExpr(Box::new(TemplateExpr::QuotedString(s.clone())))
        }
        serde_json::Value::Array(items) => Expression::Array(items.iter().map(json_expr).collect()),
        serde_json::Value::Object(o) => Expression::Object(
            o.iter()
                .map(|(k, v)| {
                    (
                        hcl::expr::ObjectKey::Expression(Expression::String(k.clone())),
                        json_expr(v),
                    )
                })
                .collect(),
        ),
        other => hcl::to_expression(other).unwrap_or(Expression::Null),
    }
}

/// The first label of a block, if any.
fn label(block: &Block) -> Option<&str> {
    block.labels.first().map(|l| l.as_str())
}

fn attr<'a>(block: &'a Block, key: &str) -> Option<&'a Expression> {
    block
        .body
        .attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

/// Evaluates the HCL and JSON bake `files` (path and text) together.
pub fn load(
    files: &[(PathBuf, String)],
    env: &BTreeMap<String, String>,
) -> Result<Definition, HclError> {
    let mut bodies = Vec::new();
    for (path, text) in files {
        bodies.push((path.clone(), parse(path, text)?));
    }
    // Functions and variables of every file, later definitions over earlier ones.
    let mut funcs: Vec<UserFunc> = Vec::new();
    let mut vars: Vec<(PathBuf, String, Expression, bool)> = Vec::new();
    for (path, body) in &bodies {
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    vars.retain(|v| v.1 != a.key.as_str());
                    vars.push((path.clone(), a.key.to_string(), a.expr.clone(), false));
                }
                Structure::Block(b) => {
                    let kind = b.identifier.as_str();
                    let what = format!("{kind} {:?}", label(b).unwrap_or_default());
                    let bad = |reason: &str| HclError::Block {
                        file: path.clone(),
                        what: what.clone(),
                        reason: reason.to_string(),
                    };
                    if !matches!(kind, "variable" | "function" | "target" | "group") {
                        return Err(bad(
                            "unknown block type (expected variable, function, target or group)",
                        ));
                    }
                    let Some(name) = label(b) else {
                        return Err(bad("the block needs a name label"));
                    };
                    if matches!(kind, "target" | "group")
                        && !super::valid_name(&super::sanitize(name))
                    {
                        return Err(bad(super::VALID_NAME));
                    }
                    match kind {
                        "variable" => {
                            let default = attr(b, "default").cloned().unwrap_or(Expression::Null);
                            vars.retain(|v| v.1 != name);
                            vars.push((path.clone(), name.to_string(), default, true));
                        }
                        "function" => {
                            let names = |key: &str| -> Result<Vec<String>, HclError> {
                                match attr(b, key) {
                                    None => Ok(Vec::new()),
                                    Some(Expression::Array(items)) => items
                                        .iter()
                                        .map(|i| match i {
                                            Expression::Variable(v) => Ok(v.to_string()),
                                            _ => Err(bad(&format!("{key} must list names"))),
                                        })
                                        .collect(),
                                    Some(Expression::Variable(v)) => Ok(vec![v.to_string()]),
                                    Some(_) => Err(bad(&format!("{key} must list names"))),
                                }
                            };
                            let f = UserFunc {
                                name: name.to_string(),
                                params: names("params")?,
                                variadic: names("variadic_params")?.into_iter().next(),
                                result: attr(b, "result")
                                    .cloned()
                                    .ok_or_else(|| bad("the function has no result"))?,
                            };
                            funcs.retain(|g| g.name != f.name);
                            funcs.push(f);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    if funcs.len() > MAX_USER_FUNCS {
        return Err(HclError::TooManyFunctions { count: funcs.len() });
    }
    let user = UserFuncs::install(funcs);
    let values = variables(&vars, env, &user)?;
    user.set_vars(&values);
    let mut ctx = Context::new();
    user.declare(&mut ctx);
    for (k, v) in &values {
        ctx.declare_var(k.as_str(), v.clone());
    }

    let mut def = Definition::default();
    for (path, body) in &bodies {
        for b in body.blocks() {
            let kind = b.identifier.as_str();
            if !matches!(kind, "target" | "group") {
                continue;
            }
            let name = super::sanitize(label(b).unwrap_or_default());
            let what = format!("{kind} {name:?}");
            let mut obj = serde_json::Map::new();
            for a in b.body.attributes() {
                let v = a.expr.evaluate(&ctx).map_err(|e| HclError::Eval {
                    file: path.clone(),
                    what: format!("{what} attribute {}", a.key),
                    message: e.to_string(),
                })?;
                let v = serde_json::to_value(&v).map_err(|e| HclError::Eval {
                    file: path.clone(),
                    what: format!("{what} attribute {}", a.key),
                    message: e.to_string(),
                })?;
                obj.insert(a.key.to_string(), v);
            }
            if let Some(inner) = b.body.blocks().next() {
                return Err(HclError::Block {
                    file: path.clone(),
                    what,
                    reason: format!("nested block {} is not supported", inner.identifier),
                });
            }
            let eval_err = |e: serde_json::Error| HclError::Eval {
                file: path.clone(),
                what: what.clone(),
                message: e.to_string(),
            };
            let obj = serde_json::Value::Object(obj);
            if kind == "target" {
                let t: Target = serde_json::from_value(obj).map_err(eval_err)?;
                match def.target.get_mut(&name) {
                    Some(old) => old.merge(&t),
                    None => {
                        def.target.insert(name, t);
                    }
                }
            } else {
                let g: Group = serde_json::from_value(obj).map_err(eval_err)?;
                def.group.insert(name, g);
            }
        }
    }
    drop(user);
    Ok(def)
}

/// Evaluates the variables: the environment's value for a `variable` block's name, else its
/// default; passes until every one is known (they may use each other in any order).
fn variables(
    vars: &[(PathBuf, String, Expression, bool)],
    env: &BTreeMap<String, String>,
    user: &UserFuncs,
) -> Result<Vec<(String, Value)>, HclError> {
    let mut known: Vec<(String, Value)> = Vec::new();
    let mut pending: Vec<&(PathBuf, String, Expression, bool)> = vars.iter().collect();
    while !pending.is_empty() {
        user.set_vars(&known);
        let mut ctx = Context::new();
        user.declare(&mut ctx);
        for (k, v) in &known {
            ctx.declare_var(k.as_str(), v.clone());
        }
        let mut left = Vec::new();
        let mut first_error = None;
        for var in &pending {
            let (path, name, expr, overridable) = var;
            let value = match expr.evaluate(&ctx) {
                Ok(v) => v,
                Err(e) => {
                    first_error.get_or_insert((path.clone(), name.clone(), e.to_string()));
                    left.push(*var);
                    continue;
                }
            };
            let value = match env.get(name).filter(|_| *overridable) {
                Some(text) => from_env(text, &value),
                None => value,
            };
            known.push((name.clone(), value));
        }
        if left.len() == pending.len() {
            let (path, name, message) = first_error.unwrap_or_default();
            if left.len() == 1 {
                return Err(HclError::Eval {
                    file: path,
                    what: format!("variable {name:?}"),
                    message,
                });
            }
            return Err(HclError::Variables {
                names: left
                    .iter()
                    .map(|v| v.1.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                message,
            });
        }
        pending = left;
    }
    Ok(known)
}

/// An environment variable's text as the type of the default it overrides.
fn from_env(text: &str, default: &Value) -> Value {
    match default {
        Value::Bool(_) => match text {
            "true" | "1" => Value::Bool(true),
            "false" | "0" | "" => Value::Bool(false),
            _ => Value::from(text.to_string()),
        },
        Value::Number(_) => text
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::from(text.to_string())),
        _ => Value::from(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(name: &str, text: &str, env: &[(&str, &str)]) -> Result<Definition, HclError> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(&[(PathBuf::from(name), text.to_string())], &env)
    }

    #[test]
    fn variables_functions_and_stdlib() {
        let text = r#"
variable "TAG" { default = "dev" }
variable "REPO" { default = "${PREFIX}/app" }
PREFIX = "localhost"
function "tagged" {
  params = [repo, tag]
  result = "${repo}:${upper(tag)}"
}
target "app" {
  tags = [tagged(REPO, TAG), join("-", ["a", "b"]), format("%s-%d", "v", 2)]
  args = { N = 3, B = equal(TAG, "dev"), L = length(split(",", "a,b,c")) }
}
"#;
        let d = eval("docker-bake.hcl", text, &[]).unwrap();
        let t = &d.target["app"];
        assert_eq!(
            t.tags.as_deref().unwrap(),
            ["localhost/app:DEV", "a-b", "v-2"]
        );
        assert_eq!(t.args["N"], "3");
        assert_eq!(t.args["B"], "true");
        assert_eq!(t.args["L"], "3");
        let d = eval("docker-bake.hcl", text, &[("TAG", "prod")]).unwrap();
        assert_eq!(
            d.target["app"].tags.as_ref().unwrap()[0],
            "localhost/app:PROD"
        );
    }

    #[test]
    fn json_strings_are_templates() {
        let text = r#"{"variable": {"TAG": {"default": "1"}},
            "target": {"app": {"tags": ["r:${TAG}"], "no-cache": true}}}"#;
        let d = eval("docker-bake.json", text, &[("TAG", "2")]).unwrap();
        assert_eq!(d.target["app"].tags.as_deref().unwrap(), ["r:2"]);
        assert_eq!(d.target["app"].no_cache, Some(true));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = eval("docker-bake.hcl", "target \"a\" {\n  tags = [\n}\n", &[]).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("docker-bake.hcl:3:"), "{text}");
    }

    #[test]
    fn recursion_is_bounded() {
        let text = r#"
function "f" {
  params = [x]
  result = f(x)
}
target "a" { tags = [f(1)] }
"#;
        let e = eval("docker-bake.hcl", text, &[]).unwrap_err().to_string();
        assert!(e.contains("deeper than"), "{e}");
    }
}
