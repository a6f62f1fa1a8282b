//! Removing an image or a kernel together with the VMs that use it (`rmi -f`, `rmk -f`).
//! It sits above images, kernels and VMs, so that none of them needs another's removal.

use ignite_api::{Image, Kernel, Vm};
use ignite_store::Store;

use crate::images::{ImageError, remove_unused_rootfs, vms_using};
use crate::kernels;
use crate::vms::{VmError, remove_vm};

/// Removes an image. Refused while VMs use it, unless `force`, which removes them too.
/// Returns the VMs removed.
pub fn remove_image(
    store: &Store,
    query: &str,
    force: bool,
) -> Result<(Image, Vec<Vm>), ImageError> {
    let image = store.images().find(query)?;
    let users = vms_using(store, &image)?;
    // Snapshots of the user's VMs of it (a warm-start template is not the image's: the
    // VMs restored from it bring their own disks).
    let snapshots: Vec<ignite_api::Snapshot> = store
        .snapshots()
        .list()?
        .objects
        .into_iter()
        .filter(|s| {
            !s.metadata
                .labels
                .contains_key(crate::vms::warm::TEMPLATE_LABEL)
                && s.spec
                    .vm_spec
                    .image_ref()
                    .is_some_and(|r| r.to_string() == image.metadata.name)
        })
        .collect();
    if (!users.is_empty() || !snapshots.is_empty()) && !force {
        return Err(ImageError::InUse {
            image: image.metadata.name.clone(),
            vms: users
                .iter()
                .map(|v| format!("{} ({})", v.metadata.name, uid_str(v)))
                .chain(
                    snapshots
                        .iter()
                        .map(|s| format!("snapshot {}", s.metadata.name)),
                )
                .collect(),
        });
    }
    remove_all(store, &users)?;
    for snapshot in snapshots {
        let name = snapshot.metadata.name.clone();
        crate::vms::snapshot::remove_snapshot(store, snapshot).map_err(|e| {
            ImageError::Store(ignite_store::StoreError::Io(
                ignite_host_tools::PathError::new(
                    "remove snapshot",
                    std::path::PathBuf::from(name),
                    std::io::Error::other(e.to_string()),
                ),
            ))
        })?;
    }
    let uid = image
        .metadata
        .uid
        .clone()
        .expect("stored images have a uid");
    store.images().delete(&uid)?;
    if let Some(id) = &image.status.image_id {
        remove_unused_rootfs(store, id)?;
    }
    Ok((image, users))
}

fn uid_str(vm: &Vm) -> String {
    vm.metadata
        .uid
        .as_ref()
        .map_or_else(String::new, ToString::to_string)
}

/// Removes a kernel. Refused while VMs use it, unless `force`, which removes them too.
pub fn remove_kernel(
    store: &Store,
    query: &str,
    force: bool,
) -> Result<(Kernel, Vec<Vm>), ImageError> {
    let kernel = store.kernels().find(query)?;
    let users = kernels::vms_using(store, &kernel)?;
    if !users.is_empty() && !force {
        return Err(ImageError::InUse {
            image: format!("kernel {}", kernel.metadata.name),
            vms: users
                .iter()
                .map(|v| format!("{} ({})", v.metadata.name, uid_str(v)))
                .collect(),
        });
    }
    remove_all(store, &users)?;
    store.kernels().delete(
        kernel
            .metadata
            .uid
            .as_ref()
            .expect("stored kernels have a uid"),
    )?;
    Ok((kernel, users))
}

/// Removes VMs whose image or kernel goes (`rmi -f`, `rmk -f`); running ones are killed
/// first, so nothing of theirs is left behind.
fn remove_all(store: &Store, vms: &[Vm]) -> Result<(), ImageError> {
    for vm in vms {
        remove_vm(store, vm.clone(), true).map_err(|e| match e {
            VmError::Image(e) => e,
            VmError::Store(e) => ImageError::Store(e),
            other => ImageError::Source(ignite_api::SourceError::new(other.to_string())),
        })?;
    }
    Ok(())
}
