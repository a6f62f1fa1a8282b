//! `-t` templates and `-f` filters, as Ignite's `ps` and `inspect` take them.

use chrono::{DateTime, TimeZone, Utc};
use ignite_api::filter::Filter;
use ignite_api::manifest;
use ignite_api::template::Template;
use ignite_api::{Image, Vm};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2022, 6, 1, 0, 0, 0).unwrap()
}

fn vm(name: &str, cpus: u64) -> Vm {
    manifest::decode(&format!(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: {name}\n  uid: 20e1d566ce318ada\n  created: 2000-01-01T01:00:00Z\n  labels: {{env: dev}}\nspec:\n  image: {{oci: foo/bar}}\n  cpus: {cpus}\n  memory: 512MB\n  network: {{ports: [{{hostPort: 80, vmPort: 8080, protocol: tcp}}]}}\nstatus:\n  running: true\n  network: {{plugin: bridge, ipAddresses: [10.61.0.2, 10.61.0.3]}}\n"
    ))
    .unwrap()
}

fn render(t: &str, v: &Vm) -> String {
    Template::compile::<Vm>(t).unwrap().render(v, now())
}

#[test]
fn renders_ignite_field_paths() {
    let v = vm("vm1", 2);
    assert_eq!(
        render("Name: {{.ObjectMeta.Name}} Image: {{.Spec.Image.OCI}}", &v),
        "Name: vm1 Image: foo/bar:latest"
    );
    assert_eq!(
        render("{{.Name}} {{.UID}} {{.Kind}} {{.TypeMeta.APIVersion}}", &v),
        "vm1 20e1d566ce318ada VM ignite.weave.works/v1alpha4"
    );
    assert_eq!(render("{{.Spec.CPUs}} {{.Spec.Memory}}", &v), "2 512.0 MB");
    assert_eq!(
        render("{{.Status.Network.IPAddresses}}", &v),
        "10.61.0.2, 10.61.0.3"
    );
    assert_eq!(
        render("{{.Spec.Network.Ports}}", &v),
        "0.0.0.0:80->8080/tcp"
    );
    assert_eq!(render("{{.ObjectMeta.Created}}", &v), "22y");
    assert_eq!(render("{{.Status.Running}}", &v), "true");
    assert_eq!(
        render(
            "{{.ObjectMeta.Labels.env}} {{.ObjectMeta.Labels.missing}}",
            &v
        ),
        "dev <no value>"
    );
    assert_eq!(render("{{ .metadata.name }}", &v), "vm1");
    assert_eq!(render("a  {{- .Name -}}  b", &v), "avm1b");
    assert_eq!(
        render("{{json .Spec.Image}}", &v),
        "{\"oci\":\"foo/bar:latest\"}"
    );
    // Go's formatting: a nil pointer, an SSH spec that generates a key, structs in order.
    assert_eq!(render("{{.Spec.SSH}}", &v), "<nil>");
    let mut with_ssh = v.clone();
    with_ssh.spec.ssh = Some(ignite_api::Ssh::Generate);
    assert_eq!(render("{{.Spec.SSH}}", &with_ssh), "{true }");
    assert_eq!(render("{{.Spec.Image}}", &v), "{foo/bar:latest}");
    // A field below a struct the object does not have: <nil>, never a zero value that
    // could pass for a real one (an exit status 0 of a VM that has not ended).
    assert_eq!(render("{{.Spec.Sandbox.OCI}}", &v), "<nil>");
    assert_eq!(render("{{.Status.Exit.Status}}", &v), "<nil>");
    assert_eq!(render("{{.ObjectMeta.Labels}}", &v), "map[env:dev]");
    assert_eq!(render("{{.Status.IDPrefix}}", &v), "");
}

#[test]
fn refuses_unknown_fields_and_bad_syntax() {
    let e = Template::compile::<Vm>("{{.Spec.CPU}}")
        .unwrap_err()
        .to_string();
    assert!(e.contains(".Spec.CPU") && e.contains("Cpus"), "{e}");
    assert!(Template::compile::<Vm>("{{.Spec.Image").is_err());
    assert!(Template::compile::<Vm>("{{Spec}}").is_err());
    assert!(Template::compile::<Vm>("{{printf .Name}}").is_err());
    assert!(Template::compile::<Vm>("x }}").is_err());
    assert!(Template::compile::<Image>("{{.Spec.CPUs}}").is_err());
    assert_eq!(
        Template::compile::<Image>("{{.Spec.OCI}}").unwrap().render(
            &manifest::decode::<Image>(
                "kind: Image\napiVersion: ignite.weave.works/v1alpha4\nspec: {oci: alpine}"
            )
            .unwrap(),
            now()
        ),
        "alpine:latest"
    );
}

#[test]
fn filters_use_all_operators() {
    let vms = [vm("vm1", 1), vm("vm2", 2), vm("vm3", 3)];
    let names = |expr: &str| -> Vec<String> {
        let f = Filter::compile::<Vm>(expr).unwrap();
        vms.iter()
            .filter(|v| f.matches(*v, now()))
            .map(|v| v.metadata.name.clone())
            .collect()
    };
    assert_eq!(names("{{.ObjectMeta.Name}}=vm2"), ["vm2"]);
    assert_eq!(names("{{.ObjectMeta.Name}}==vm2"), ["vm2"]);
    assert_eq!(names("{{.ObjectMeta.Name}}!=vm2"), ["vm1", "vm3"]);
    assert_eq!(names("{{.Spec.Image.OCI}}=~foo/bar"), ["vm1", "vm2", "vm3"]);
    assert_eq!(names("{{.Spec.Image.OCI}}!~foo"), Vec::<String>::new());
    assert_eq!(
        names("{{.ObjectMeta.Name}}=~vm,{{.Spec.CPUs}}!=3"),
        ["vm1", "vm2"]
    );
    assert_eq!(names("{{.Spec.Memory}}=512.0 MB"), ["vm1", "vm2", "vm3"]);
}

#[test]
fn filter_syntax_errors_explain_the_form() {
    for bad in [
        "name=vm1",
        "{{.ObjectMeta.Name}}",
        "{{.ObjectMeta.Name}}=",
        "{{.ObjectMeta.Name}}<>x",
        "{{.Nope}}=x",
    ] {
        let e = Filter::compile::<Vm>(bad).unwrap_err().to_string();
        assert!(e.contains(bad) || e.contains("Nope"), "{bad}: {e}");
    }
}
