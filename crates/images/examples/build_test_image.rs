//! Builds the deterministic busybox test image as an OCI layout, and
//! optionally pushes it to a registry or writes an OCI archive tar.
//!
//! ```text
//! cargo run -p bosun-images --example build_test_image -- OUT_DIR \
//!     [--push 127.0.0.1:5000/busybox:1] [--user U --password P] [--archive OUT.tar]
//! ```

use std::path::PathBuf;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: build_test_image OUT_DIR [--push REF] [--archive TAR]")?,
    );
    let (mut push, mut archive, mut user, mut password) = (None, None, None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--push" => push = args.next(),
            "--archive" => archive = args.next().map(PathBuf::from),
            "--user" => user = args.next(),
            "--password" => password = args.next(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let built = bosun_images::testimage::build_busybox_image(&out)?;
    println!("{} {}", built.manifest_digest, out.display());
    if let Some(tar) = archive {
        bosun_images::testimage::tar_dir(&out, &tar)?;
        println!("archive {}", tar.display());
    }
    if let Some(target) = push {
        let creds = user.map(|u| bosun_images::Credentials::new(u, password.unwrap_or_default()));
        let client = bosun_images::RegistryClient::new(Default::default())?;
        let d = client
            .push_oci_layout(&out, Some(&built.tag), &target, creds)
            .await?;
        println!("pushed {target} {d}");
    }
    Ok(())
}
