//! The state store on a real filesystem.

use std::collections::HashSet;
use std::fs;

use ignite_api::{Image, ImageSource, ObjectMeta, Uid, Vm, VmSpec, manifest};
use ignite_store::{METADATA_FILE, Store, StoreError};

fn vm(name: &str) -> Vm {
    Vm::new(
        ObjectMeta {
            name: name.to_string(),
            ..ObjectMeta::default()
        },
        VmSpec::default(),
    )
}

fn vm_with_uid(name: &str, uid: &str) -> Vm {
    let mut v = vm(name);
    v.metadata.uid = Some(uid.parse().unwrap());
    v
}

#[test]
fn create_assigns_uid_name_and_time() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let created = store.vms().create(vm("")).unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    assert_eq!(uid.as_str().len(), 16);
    assert!(
        created.metadata.name.contains('-'),
        "{}",
        created.metadata.name
    );
    assert!(created.metadata.created.is_some());
    let path = root
        .path()
        .join("vms")
        .join(uid.as_str())
        .join(METADATA_FILE);
    let on_disk: Vm = manifest::decode(&fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(on_disk, created);
    assert_eq!(store.vms().get(&uid).unwrap(), created);
}

#[test]
fn names_and_uids_are_unique_per_kind() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let first = store.vms().create(vm("web")).unwrap();
    match store.vms().create(vm("web")) {
        Err(StoreError::NameTaken { name, uid, .. }) => {
            assert_eq!(name, "web");
            assert_eq!(uid, first.metadata.uid.unwrap().to_string());
        }
        other => panic!("{other:?}"),
    }
    store
        .vms()
        .create(vm_with_uid("a", "00000000000000aa"))
        .unwrap();
    assert!(matches!(
        store.vms().create(vm_with_uid("b", "00000000000000aa")),
        Err(StoreError::UidTaken { .. })
    ));
    // Images need a name (their reference); they are never given a random one.
    let image = Image::new(ObjectMeta::default(), ImageSource::parse("alpine").unwrap());
    assert!(matches!(
        store.images().create(image),
        Err(StoreError::NameRequired { .. })
    ));
    assert_eq!(store.vms().list().unwrap().objects.len(), 2);
}

#[test]
fn lookup_by_prefix_prefers_exact_matches() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    store
        .vms()
        .create(vm_with_uid("web", "aaaa000000000001"))
        .unwrap();
    store
        .vms()
        .create(vm_with_uid("web-2", "aaaa000000000002"))
        .unwrap();
    store
        .vms()
        .create(vm_with_uid("db", "bbbb000000000003"))
        .unwrap();
    let vms = store.vms();
    assert_eq!(vms.find("db").unwrap().metadata.name, "db");
    assert_eq!(vms.find("d").unwrap().metadata.name, "db");
    assert_eq!(vms.find("bbbb").unwrap().metadata.name, "db");
    // "web" is a prefix of "web-2" too, but it is also an exact name.
    assert_eq!(vms.find("web").unwrap().metadata.name, "web");
    assert_eq!(vms.find("aaaa000000000002").unwrap().metadata.name, "web-2");
    match vms.find("aaaa") {
        Err(e @ StoreError::Ambiguous { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("aaaa000000000001 (web)") && msg.contains("aaaa000000000002 (web-2)"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    match vms.find("zzz") {
        Err(e @ StoreError::NotFound { .. }) => assert!(e.to_string().contains("\"zzz\""), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(vms.find("").is_err());
}

#[test]
fn damaged_objects_are_reported_not_fatal() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    store.vms().create(vm("good")).unwrap();
    let bad_dir = root.path().join("vms/00000000000000bd");
    fs::create_dir_all(&bad_dir).unwrap();
    fs::write(bad_dir.join(METADATA_FILE), "{ not json").unwrap();
    // A directory without metadata (a creation in progress) and foreign files are ignored.
    fs::create_dir_all(root.path().join("vms/00000000000000ee")).unwrap();
    fs::write(root.path().join("vms/README"), "hi").unwrap();
    let listing = store.vms().list().unwrap();
    assert_eq!(listing.objects.len(), 1);
    assert_eq!(listing.damaged.len(), 1);
    let msg = listing.damaged[0].to_string();
    assert!(
        msg.contains("00000000000000bd") && msg.contains("damaged"),
        "{msg}"
    );
    // The damaged file is left untouched for the user to inspect.
    assert_eq!(
        fs::read_to_string(bad_dir.join(METADATA_FILE)).unwrap(),
        "{ not json"
    );
}

#[test]
fn update_save_and_delete() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let v = store.vms().create(vm("box")).unwrap();
    let uid = v.metadata.uid.clone().unwrap();
    let updated = store
        .vms()
        .update(&uid, |vm| -> Result<(), StoreError> {
            vm.status.running = true;
            Ok(())
        })
        .unwrap();
    assert!(updated.status.running);
    assert!(store.vms().get(&uid).unwrap().status.running);

    fs::write(store.vms().object_dir(&uid).join("disk.img"), b"x").unwrap();
    store.vms().delete(&uid).unwrap();
    assert!(!store.vms().object_dir(&uid).exists());
    assert!(matches!(
        store.vms().get(&uid),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.vms().save(&v),
        Err(StoreError::NotFound { .. })
    ));
    // No lock file is left behind for a removed object.
    let locks: Vec<_> = fs::read_dir(root.path().join("locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !locks
            .iter()
            .any(|l| l.to_string_lossy().contains(uid.as_str())),
        "{locks:?}"
    );
}

#[test]
fn a_failed_update_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let v = store.vms().create(vm("box")).unwrap();
    let uid = v.metadata.uid.clone().unwrap();
    let r = store.vms().update(&uid, |vm| {
        vm.status.running = true;
        Err(StoreError::NameRequired {
            kind: ignite_api::Kind::Vm,
        })
    });
    assert!(r.is_err());
    assert!(!store.vms().get(&uid).unwrap().status.running);
}

#[test]
fn twenty_concurrent_writers_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let shared = store.vms().create(vm("shared")).unwrap();
    let shared_uid: Uid = shared.metadata.uid.unwrap();
    const WRITERS: usize = 20;
    const UPDATES: usize = 10;
    std::thread::scope(|s| {
        for i in 0..WRITERS {
            let root = root.path().to_path_buf();
            let shared_uid = shared_uid.clone();
            s.spawn(move || {
                // Each writer opens its own store, as separate processes would.
                let store = Store::open(root).unwrap();
                // Half ask for a generated name, half for their own.
                let name = if i % 2 == 0 {
                    String::new()
                } else {
                    format!("vm-{i}")
                };
                store.vms().create(vm(&name)).unwrap();
                for _ in 0..UPDATES {
                    store
                        .vms()
                        .update(&shared_uid, |vm| -> Result<(), StoreError> {
                            let n: usize = vm
                                .metadata
                                .labels
                                .get("count")
                                .map_or(0, |c| c.parse().unwrap());
                            vm.metadata
                                .labels
                                .insert("count".into(), (n + 1).to_string());
                            Ok(())
                        })
                        .unwrap();
                }
            });
        }
    });
    let listing = store.vms().list().unwrap();
    assert!(listing.damaged.is_empty(), "{:?}", listing.damaged);
    assert_eq!(listing.objects.len(), WRITERS + 1);
    let names: HashSet<_> = listing
        .objects
        .iter()
        .map(|v| v.metadata.name.clone())
        .collect();
    assert_eq!(names.len(), WRITERS + 1, "names must be unique: {names:?}");
    let shared = store.vms().get(&shared_uid).unwrap();
    assert_eq!(
        shared.metadata.labels["count"],
        (WRITERS * UPDATES).to_string()
    );
    // No temporary file is left in any object directory.
    for entry in fs::read_dir(root.path().join("vms")).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_dir() {
            continue;
        }
        for file in fs::read_dir(entry.path()).unwrap() {
            assert_eq!(file.unwrap().file_name(), METADATA_FILE);
        }
    }
}

#[test]
fn a_missing_root_reads_as_empty() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open_existing(root.path().join("nothing-here"));
    assert!(store.vms().list().unwrap().objects.is_empty());
    assert!(!root.path().join("nothing-here").exists());
}

#[test]
fn object_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let v = store.vms().create(vm("p")).unwrap();
    let dir = store.vms().object_dir(v.metadata.uid.as_ref().unwrap());
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn summaries_follow_every_change() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let names = |store: &Store| {
        let mut lines = store
            .vms()
            .summaries("test-v1", |vm| vm.metadata.name.clone())
            .unwrap()
            .lines;
        lines.sort();
        lines
    };
    assert!(names(&store).is_empty());
    let a = store.vms().create(vm("a")).unwrap();
    store.vms().create(vm("b")).unwrap();
    assert_eq!(names(&store), ["a", "b"]);
    // Served from the index now: a summary built from the index matches the objects.
    assert!(root.path().join("vms/.index").exists());
    assert_eq!(names(&store), ["a", "b"]);
    let uid = a.metadata.uid.unwrap();
    store
        .vms()
        .update(&uid, |vm| -> Result<(), StoreError> {
            vm.metadata.name = "renamed".into();
            Ok(())
        })
        .unwrap();
    assert_eq!(names(&store), ["b", "renamed"]);
    store.vms().delete(&uid).unwrap();
    assert_eq!(names(&store), ["b"]);
    // Another line format rebuilds instead of reusing the index.
    let upper = store
        .vms()
        .summaries("test-v2", |vm| vm.metadata.name.to_uppercase())
        .unwrap();
    assert_eq!(upper.lines, ["B"]);
    // An index made by a writer that did not bump the generation is never trusted.
    fs::write(root.path().join("vms/.index"), "test-v1\tbogus\nstale\n").unwrap();
    assert_eq!(names(&store), ["b"]);
}

#[test]
fn summaries_report_damage_and_do_not_cache_it() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    store.vms().create(vm("a")).unwrap();
    let bad = root.path().join("vms/00000000000000bd");
    fs::create_dir_all(&bad).unwrap();
    fs::write(bad.join(METADATA_FILE), "garbage").unwrap();
    for _ in 0..2 {
        let s = store
            .vms()
            .summaries("t", |vm| vm.metadata.name.clone())
            .unwrap();
        assert_eq!(s.lines, ["a"]);
        assert_eq!(s.damaged.len(), 1);
    }
}
