//! `ignite inspect KIND OBJECT`: one object in full, as JSON, YAML or through a template.

use anyhow::bail;
use chrono::Utc;
use ignite_api::Kind;
use ignite_api::manifest;
use ignite_api::template::{Template, TemplateSubject};
use ignite_store::StoredObject;

use super::{Context, write_stdout};
use crate::args::{InspectArgs, InspectFormat};

pub fn run(ctx: &Context, args: &InspectArgs) -> anyhow::Result<()> {
    let text = match Kind::from_user_input(&args.kind) {
        Some(Kind::Vm) => {
            let mut vm = ctx.store.vms().find(&args.object)?;
            vm.status.memory = ignite_runtime::vms::host_memory::vm_memory(&ctx.store, &vm);
            show(vm, args)?
        }
        Some(Kind::Image) => show(ctx.store.images().find(&args.object)?, args)?,
        Some(Kind::Kernel) => show(ctx.store.kernels().find(&args.object)?, args)?,
        _ => bail!(
            "unrecognized kind {:?}: inspect takes vm, image or kernel",
            args.kind
        ),
    };
    write_stdout(&text)
}

fn show<T: StoredObject + TemplateSubject>(
    object: T,
    args: &InspectArgs,
) -> anyhow::Result<String> {
    if let Some(t) = &args.template {
        let mut text = Template::compile::<T>(t)?.render(&object, Utc::now());
        text.push('\n');
        return Ok(text);
    }
    Ok(match args.output {
        InspectFormat::Json => manifest::to_json(&object),
        InspectFormat::Yaml => manifest::to_yaml(&object),
    })
}
