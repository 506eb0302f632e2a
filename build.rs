//! Compiles `proto/` with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/ai/integration/v1/tasks.proto",
        "proto/ai/integration/v1/admin.proto",
        "proto/ai/integration/v1/notifications.proto",
        "proto/ai/integration/v1/providers.proto",
        "proto/ai/integration/v1/eventstore.proto",
        "proto/ai/integration/v1/progress.proto",
        "proto/ai/integration/v1/chat.proto",
        "proto/ai/integration/v1/pipeline.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("ai_integration_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .compile_well_known_types(false)
        .compile_fds(descriptors)?;
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    // `sqlx::migrate!` embeds `migrations/` at compile time but cannot ask cargo to watch it on
    // stable Rust: without this, a new migration file is left out until some source changes.
    println!("cargo:rerun-if-changed=migrations");
    Ok(())
}
