//! The runtime's reconciler as ignited configures it (the Configuration's registry
//! settings, no progress output), for the reconcile loop and the API alike.

use std::path::PathBuf;

use ignite_api::Configuration;
use ignite_runtime::reconcile::Reconciler;
use ignite_store::Store;

/// A reconciler for `source` with the Configuration's registry settings.
pub fn reconciler<'a>(
    store: &'a Store,
    source: &'a str,
    configuration: Option<&'a Configuration>,
    supervisor: PathBuf,
) -> Reconciler<'a> {
    Reconciler {
        store,
        source,
        configuration,
        import: ignite_runtime::images::ImportOptions {
            registry_config_dir: configuration.and_then(|c| c.spec.registry_config_dir.clone()),
            lookup: ignite_runtime::image_lookup::EngineLookup::for_manifests(configuration),
            ..Default::default()
        },
        supervisor_program: supervisor,
        progress: &ignite_oci::fetch::NoProgress,
    }
}
