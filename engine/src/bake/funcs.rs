//! The functions bake files may call: a part of buildx's standard library ([`STDLIB`]), and
//! the file's own `function` blocks ([`UserFuncs`]).

use std::cell::RefCell;

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Expression, Value};

/// The standard functions, by name. Their behaviour follows buildx's (go-cty's stdlib).
pub const STDLIB: &[&str] = &[
    "and",
    "coalesce",
    "concat",
    "contains",
    "equal",
    "format",
    "join",
    "length",
    "lookup",
    "lower",
    "not",
    "notequal",
    "or",
    "replace",
    "split",
    "timestamp",
    "title",
    "trim",
    "trimprefix",
    "trimspace",
    "trimsuffix",
    "upper",
];

/// Declares the standard functions in `ctx`.
pub fn declare_stdlib(ctx: &mut Context<'_>) {
    use ParamType::{Any, Array, Bool, Object, String as Str};
    let f = |params: Vec<ParamType>, func: hcl::eval::Func| FuncDef::new(func, params);
    let arr = || Array(Box::new(Any));
    ctx.declare_func(
        "and",
        f(vec![Bool, Bool], |a| Ok(Value::Bool(b(&a[0]) && b(&a[1])))),
    );
    ctx.declare_func(
        "or",
        f(vec![Bool, Bool], |a| Ok(Value::Bool(b(&a[0]) || b(&a[1])))),
    );
    ctx.declare_func("not", f(vec![Bool], |a| Ok(Value::Bool(!b(&a[0])))));
    ctx.declare_func(
        "equal",
        f(vec![Any, Any], |a| Ok(Value::Bool(a[0] == a[1]))),
    );
    ctx.declare_func(
        "notequal",
        f(vec![Any, Any], |a| Ok(Value::Bool(a[0] != a[1]))),
    );
    ctx.declare_func(
        "upper",
        f(vec![Str], |a| Ok(s(&a[0]).to_uppercase().into())),
    );
    ctx.declare_func(
        "lower",
        f(vec![Str], |a| Ok(s(&a[0]).to_lowercase().into())),
    );
    ctx.declare_func("title", f(vec![Str], |a| Ok(title(s(&a[0])).into())));
    ctx.declare_func("trimspace", f(vec![Str], |a| Ok(s(&a[0]).trim().into())));
    ctx.declare_func(
        "trim",
        f(vec![Str, Str], |a| {
            let cut = s(&a[1]);
            Ok(s(&a[0]).trim_matches(|c| cut.contains(c)).into())
        }),
    );
    ctx.declare_func(
        "trimprefix",
        f(vec![Str, Str], |a| {
            let (t, p) = (s(&a[0]), s(&a[1]));
            Ok(t.strip_prefix(p).unwrap_or(t).into())
        }),
    );
    ctx.declare_func(
        "trimsuffix",
        f(vec![Str, Str], |a| {
            let (t, p) = (s(&a[0]), s(&a[1]));
            Ok(t.strip_suffix(p).unwrap_or(t).into())
        }),
    );
    ctx.declare_func(
        "replace",
        f(vec![Str, Str, Str], |a| {
            Ok(s(&a[0]).replace(s(&a[1]), s(&a[2])).into())
        }),
    );
    ctx.declare_func(
        "join",
        FuncDef::builder()
            .param(Str)
            .variadic_param(arr())
            .build(|a| {
                let mut parts = Vec::new();
                for list in a.variadic_args() {
                    for v in list.as_array().into_iter().flatten() {
                        parts.push(text(v)?);
                    }
                }
                Ok(parts.join(s(&a[0])).into())
            }),
    );
    ctx.declare_func(
        "split",
        f(vec![Str, Str], |a| {
            let (sep, t) = (s(&a[0]), s(&a[1]));
            Ok(Value::Array(
                t.split(sep).map(|p| Value::from(p.to_string())).collect(),
            ))
        }),
    );
    ctx.declare_func(
        "concat",
        FuncDef::builder().variadic_param(arr()).build(|a| {
            Ok(Value::Array(
                a.iter()
                    .flat_map(|l| l.as_array().cloned().unwrap_or_default())
                    .collect(),
            ))
        }),
    );
    ctx.declare_func(
        "coalesce",
        FuncDef::builder().variadic_param(Any).build(|a| {
            a.iter()
                .find(|v| !matches!(v, Value::Null) && v.as_str() != Some(""))
                .cloned()
                .ok_or_else(|| "no non-null, non-empty argument".to_string())
        }),
    );
    ctx.declare_func(
        "lookup",
        FuncDef::builder()
            .param(Object(Box::new(Any)))
            .param(Str)
            .variadic_param(Any)
            .build(|a| {
                let key = s(&a[1]);
                match a[0].as_object().and_then(|o| o.get(key)) {
                    Some(v) => Ok(v.clone()),
                    None => a
                        .variadic_args()
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("the map has no key {key:?} and no default")),
                }
            }),
    );
    ctx.declare_func(
        "length",
        f(vec![Any], |a| {
            let n = match &a[0] {
                Value::String(t) => t.chars().count(),
                Value::Array(l) => l.len(),
                Value::Object(o) => o.len(),
                other => return Err(format!("length of {other} is not defined")),
            };
            Ok(Value::from(n as u64))
        }),
    );
    ctx.declare_func(
        "contains",
        f(vec![arr(), Any], |a| {
            Ok(Value::Bool(
                a[0].as_array().is_some_and(|l| l.contains(&a[1])),
            ))
        }),
    );
    ctx.declare_func(
        "format",
        FuncDef::builder()
            .param(Str)
            .variadic_param(Any)
            .build(|a| format(s(&a[0]), &a[1..])),
    );
    ctx.declare_func(
        "timestamp",
        f(vec![], |_| {
            Ok(jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .map_err(|e| e.to_string())?
                .to_string()
                .into())
        }),
    );
}

fn b(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A scalar as text (`format`'s `%s`, `join`'s items).
fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(t) => Ok(t.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("{other} is not a string, number or bool")),
    }
}

fn title(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut start = true;
    for c in t.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    out
}

/// `format`: `%s`, `%d`, `%v` and `%q` take the next argument, `%%` is a `%`.
fn format(spec: &str, args: &[Value]) -> Result<Value, String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars.next().ok_or("format ends with a lone %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .next()
            .ok_or_else(|| format!("format has more verbs than arguments: %{verb}"))?;
        match verb {
            's' | 'v' => out.push_str(&text(arg)?),
            'd' => match arg {
                Value::Number(n) => out.push_str(&n.to_string()),
                other => return Err(format!("%d needs a number, not {other}")),
            },
            'q' => out.push_str(&format!("{:?}", text(arg)?)),
            other => return Err(format!("format verb %{other} is not supported")),
        }
    }
    Ok(out.into())
}

/// The `function` blocks of the bake files: `params`, optional `variadic_params`, `result`.
#[derive(Debug, Clone)]
pub struct UserFunc {
    /// The name.
    pub name: String,
    /// The parameter names.
    pub params: Vec<String>,
    /// The name of the list of further arguments, if any.
    pub variadic: Option<String>,
    /// The result expression.
    pub result: Expression,
}

/// How many `function` blocks the files may define.
pub const MAX_USER_FUNCS: usize = 16;

/// How deep function calls may nest (a recursive function fails here).
const MAX_DEPTH: usize = 32;

thread_local! {
    /// The functions and variables calls of user functions see, for this thread's
    /// evaluation (hcl's function pointers carry no state).
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
    static DEPTH: RefCell<usize> = const { RefCell::new(0) };
}

#[derive(Debug, Clone)]
struct Scope {
    funcs: Vec<UserFunc>,
    vars: Vec<(String, Value)>,
}

/// The user functions of an evaluation, callable while this value lives (on this thread).
#[derive(Debug)]
pub struct UserFuncs(());

impl UserFuncs {
    /// Makes `funcs` callable (at most [`MAX_USER_FUNCS`]).
    pub fn install(funcs: Vec<UserFunc>) -> UserFuncs {
        SCOPE.with(|s| {
            *s.borrow_mut() = Some(Scope {
                funcs,
                vars: Vec::new(),
            });
        });
        UserFuncs(())
    }

    /// Sets the variables the functions' results see.
    pub fn set_vars(&self, vars: &[(String, Value)]) {
        SCOPE.with(|s| {
            if let Some(scope) = s.borrow_mut().as_mut() {
                scope.vars = vars.to_vec();
            }
        });
    }

    /// Declares every function (standard and user) in `ctx`.
    pub fn declare(&self, ctx: &mut Context<'_>) {
        declare_all(ctx);
    }
}

impl Drop for UserFuncs {
    fn drop(&mut self) {
        SCOPE.with(|s| *s.borrow_mut() = None);
    }
}

fn declare_all(ctx: &mut Context<'_>) {
    declare_stdlib(ctx);
    let funcs = SCOPE.with(|s| s.borrow().as_ref().map(|s| s.funcs.clone()));
    for (i, f) in funcs.unwrap_or_default().iter().enumerate() {
        let mut def = FuncDef::builder().params(f.params.iter().map(|_| ParamType::Any));
        if f.variadic.is_some() {
            def = def.variadic_param(ParamType::Any);
        }
        ctx.declare_func(f.name.as_str(), def.build(TRAMPOLINES[i]));
    }
}

/// Calls user function `index` with `args`.
fn call(index: usize, args: FuncArgs) -> Result<Value, String> {
    let Some(scope) = SCOPE.with(|s| s.borrow().clone()) else {
        return Err("function called outside its file's evaluation".into());
    };
    let f = &scope.funcs[index];
    let depth = DEPTH.with(|d| {
        *d.borrow_mut() += 1;
        *d.borrow()
    });
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            DEPTH.with(|d| *d.borrow_mut() -= 1);
        }
    }
    let _leave = Leave;
    if depth > MAX_DEPTH {
        return Err(format!(
            "function {} nests calls deeper than {MAX_DEPTH}",
            f.name
        ));
    }
    let mut ctx = Context::new();
    declare_all(&mut ctx);
    for (k, v) in &scope.vars {
        ctx.declare_var(k.as_str(), v.clone());
    }
    let values = args.into_values();
    for (p, v) in f.params.iter().zip(values.iter()) {
        ctx.declare_var(p.as_str(), v.clone());
    }
    if let Some(rest) = &f.variadic {
        let more: Vec<Value> = values.iter().skip(f.params.len()).cloned().collect();
        ctx.declare_var(rest.as_str(), Value::Array(more));
    }
    f.result
        .evaluate(&ctx)
        .map_err(|e| format!("function {}: {e}", f.name))
}

macro_rules! trampolines {
    ($($i:literal => $name:ident),*) => {
        $(fn $name(args: FuncArgs) -> Result<Value, String> { call($i, args) })*
        const TRAMPOLINES: [hcl::eval::Func; MAX_USER_FUNCS] = [$($name),*];
    };
}

trampolines!(
    0 => user0, 1 => user1, 2 => user2, 3 => user3, 4 => user4, 5 => user5, 6 => user6,
    7 => user7, 8 => user8, 9 => user9, 10 => user10, 11 => user11, 12 => user12,
    13 => user13, 14 => user14, 15 => user15
);
