//! What the host calls in a component, type-checked when the service loads, before any
//! request, event or saga command reaches it.
//!
//! wasmtime's generated bindings find an export by name when a service loads but check its
//! type only when it is first called (`get_typed_func`): a component whose `handle` takes
//! the wrong arguments would load, and then fail every request with a 503. Here every export
//! the host calls is checked at load with the very Rust signature the host calls it with,
//! against the component's types as linked (so a resource must be the host's own
//! `incoming-request` or `transaction`, not a look-alike), and the exports the service's
//! declared role needs must be there: `event-handler` for a subscriber, `command-handler`
//! for a saga participant, `saga-handler` for a service that starts sagas.
//!
//! The check is wasmtime's own: `ComponentFunc::typecheck` against the `InstancePre`'s
//! instance type, the call the bindings `bindgen!` generates make for world-level function
//! exports. Nothing is parsed by hand and no guest code runs.

use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{ComponentNamedList, InstancePre, Lift, Lower, Resource};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use crate::bindings::exports::silo::service::{
    command_handler, event_handler, migrations, saga_handler,
};
use crate::manifest::ServiceSpec;
use crate::sql::Transaction;

/// The standard HTTP export every service has (any 0.2 version of it).
pub const HTTP_HANDLER: &str = "wasi:http/incoming-handler@0.2.12";
pub const EVENT_HANDLER: &str = "silo:service/event-handler@0.1.0";
pub const COMMAND_HANDLER: &str = "silo:service/command-handler@0.1.0";
pub const SAGA_HANDLER: &str = "silo:service/saga-handler@0.1.0";
pub const MIGRATIONS: &str = "silo:service/migrations@0.1.0";

/// silo's exports a component has, each found and type-checked.
#[derive(Clone, Default)]
pub struct Exports {
    pub event_handler: Option<event_handler::GuestIndices>,
    pub command_handler: Option<command_handler::GuestIndices>,
    pub saga_handler: Option<saga_handler::GuestIndices>,
}

/// Why a component cannot serve as the service: a sentence for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExportError(pub String);

/// Checks that the component behind `pre` exports, with the right types, everything the
/// host will call as service `name` declared by `spec`. `commanded_by` lists the services
/// that name this one in their `saga-participants`.
pub fn check<T: 'static>(
    pre: &InstancePre<T>,
    name: &str,
    spec: &ServiceSpec,
    commanded_by: &[String],
) -> Result<Exports, ExportError> {
    let exported = || exported_names(pre);
    match func(pre, HTTP_HANDLER, "handle") {
        None => {
            return Err(ExportError(format!(
                "service `{name}`: the component does not export `wasi:http/incoming-handler@0.2.x` (every service is a wasi:http component); it exports {}",
                exported()
            )));
        }
        Some(f) => typecheck::<
            (
                Resource<HostIncomingRequest>,
                Resource<HostResponseOutparam>,
            ),
            (),
        >(
            pre,
            &f,
            name,
            "wasi:http/incoming-handler@0.2.x",
            "handle",
            "func(request: own<incoming-request>, response-out: own<response-outparam>)",
        )?,
    }
    if let Some(f) = func(pre, MIGRATIONS, "migrations") {
        typecheck::<(), (Vec<migrations::Migration>,)>(
            pre,
            &f,
            name,
            MIGRATIONS,
            "migrations",
            "func() -> list<migration>",
        )?;
    }

    let mut exports = Exports::default();
    match func(pre, EVENT_HANDLER, "handle") {
        Some(f) => {
            typecheck::<(event_handler::Event, Resource<Transaction>), (Result<(), String>,)>(
                pre,
                &f,
                name,
                EVENT_HANDLER,
                "handle",
                "func(event: event, tx: borrow<transaction>) -> result<_, string>",
            )?;
            exports.event_handler = Some(indices(event_handler::GuestIndices::new(pre), name)?);
        }
        None if !spec.subscribes.is_empty() => {
            let subs: Vec<String> = spec
                .subscribes
                .iter()
                .map(|s| format!("{}/{}", s.source, s.topic))
                .collect();
            return Err(missing(
                name,
                EVENT_HANDLER,
                "a subscriber needs",
                &format!("`subscribes` lists {}", subs.join(", ")),
                &exported(),
            ));
        }
        None => {}
    }
    match func(pre, COMMAND_HANDLER, "handle") {
        Some(f) => {
            typecheck::<
                (command_handler::Command, Resource<Transaction>),
                (Result<command_handler::Reply, String>,),
            >(
                pre,
                &f,
                name,
                COMMAND_HANDLER,
                "handle",
                "func(command: command, tx: borrow<transaction>) -> result<reply, string>",
            )?;
            exports.command_handler = Some(indices(command_handler::GuestIndices::new(pre), name)?);
        }
        None if spec.commands.is_some() || !commanded_by.is_empty() => {
            let mut why = Vec::new();
            if let Some(commands) = &spec.commands {
                why.push(format!("the service declares `commands = {commands:?}`"));
            }
            if !commanded_by.is_empty() {
                let by: Vec<String> = commanded_by.iter().map(|s| format!("`{s}`")).collect();
                why.push(format!(
                    "{} list{} `{name}` in `saga-participants`",
                    by.join(", "),
                    if by.len() == 1 { "s" } else { "" }
                ));
            }
            return Err(missing(
                name,
                COMMAND_HANDLER,
                "a saga participant needs",
                &why.join(" and "),
                &exported(),
            ));
        }
        None => {}
    }
    match func(pre, SAGA_HANDLER, "finished") {
        Some(f) => {
            typecheck::<(saga_handler::SagaStatus, Resource<Transaction>), (Result<(), String>,)>(
                pre,
                &f,
                name,
                SAGA_HANDLER,
                "finished",
                "func(saga: saga-status, tx: borrow<transaction>) -> result<_, string>",
            )?;
            exports.saga_handler = Some(indices(saga_handler::GuestIndices::new(pre), name)?);
        }
        None if !spec.saga_participants.is_empty() => {
            return Err(missing(
                name,
                SAGA_HANDLER,
                "a service that starts sagas needs",
                &format!(
                    "`saga-participants = {:?}`",
                    spec.saga_participants.as_slice()
                ),
                &exported(),
            ));
        }
        None => {}
    }
    Ok(exports)
}

fn missing(name: &str, iface: &str, who: &str, declared: &str, exported: &str) -> ExportError {
    ExportError(format!(
        "service `{name}`: the component does not export `{iface}`, which {who}: {declared}; it exports {exported}"
    ))
}

fn indices<I>(found: wasmtime::Result<I>, name: &str) -> Result<I, ExportError> {
    found.map_err(|e| ExportError(format!("service `{name}`: {e:#}")))
}

/// The function `function` of the exported instance `interface`, if there is one.
fn func<T: 'static>(pre: &InstancePre<T>, interface: &str, function: &str) -> Option<FoundFunc> {
    let component = pre.component();
    let (_, instance) = component.get_export(None, interface)?;
    match component.get_export(Some(&instance), function) {
        Some((ComponentItem::ComponentFunc(f), _)) => Some(FoundFunc::Func(f)),
        Some(_) => Some(FoundFunc::NotAFunction),
        None => Some(FoundFunc::Missing),
    }
}

enum FoundFunc {
    Func(ComponentFunc),
    NotAFunction,
    Missing,
}

/// Checks `found` against the signature the host calls it with (`Params` → `Results`).
fn typecheck<Params, Results>(
    pre: &InstancePre<impl Sized + 'static>,
    found: &FoundFunc,
    name: &str,
    interface: &str,
    function: &str,
    expected: &str,
) -> Result<(), ExportError>
where
    Params: ComponentNamedList + Lower,
    Results: ComponentNamedList + Lift,
{
    let wrong = |actual: String, why: String| {
        ExportError(format!(
            "service `{name}`: its export `{interface}` has the wrong type: the host calls `{function}: {expected}`, the component's is {actual}{why}"
        ))
    };
    match found {
        FoundFunc::Missing => Err(wrong(
            format!("missing (no `{function}` in the instance)"),
            String::new(),
        )),
        FoundFunc::NotAFunction => Err(wrong("not a function".into(), String::new())),
        FoundFunc::Func(f) => f
            .typecheck::<Params, Results>(&pre.instance_type())
            .map_err(|e| wrong(format!("`{}`", render_func(f)), format!(" ({e})"))),
    }
}

/// The names of the component's exports, for messages.
fn exported_names<T: 'static>(pre: &InstancePre<T>) -> String {
    let component = pre.component();
    let ty = component.component_type();
    let names: Vec<String> = ty
        .exports(component.engine())
        .map(|(n, _)| format!("`{n}`"))
        .collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        format!("only {}", names.join(", "))
    }
}

/// A function type in WIT-like notation: `func(a: string) -> u32`.
fn render_func(f: &ComponentFunc) -> String {
    let params: Vec<String> = f
        .params()
        .map(|(n, t)| format!("{n}: {}", render(&t)))
        .collect();
    let results: Vec<String> = f.results().map(|t| render(&t)).collect();
    let mut out = format!("func({})", params.join(", "));
    if !results.is_empty() {
        out.push_str(" -> ");
        out.push_str(&results.join(", "));
    }
    out
}

fn render(t: &Type) -> String {
    let opt = |t: Option<Type>| t.map(|t| render(&t)).unwrap_or_else(|| "_".into());
    match t {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", render(&l.ty())),
        Type::Option(o) => format!("option<{}>", render(&o.ty())),
        Type::Result(r) => format!("result<{}, {}>", opt(r.ok()), opt(r.err())),
        Type::Tuple(t) => format!(
            "tuple<{}>",
            t.types().map(|t| render(&t)).collect::<Vec<_>>().join(", ")
        ),
        Type::Record(_) => "record".into(),
        Type::Variant(_) => "variant".into(),
        Type::Enum(_) => "enum".into(),
        Type::Flags(_) => "flags".into(),
        Type::Own(_) => "own<resource>".into(),
        Type::Borrow(_) => "borrow<resource>".into(),
        _ => "a type silo never takes".into(),
    }
}
