//! `gradfree devices`: the GPU adapters and the CPU backend.

use anyhow::Result;
use gradfree::gpu::{BackendChoice, list_adapters};
use serde_json::json;

pub(crate) fn devices(backend: Option<BackendChoice>, as_json: bool) -> Result<()> {
    let adapters = list_adapters(backend);
    let cpu = json!({
        "name": "gradfree CPU backend (Rust + rayon)",
        "threads": rayon::current_num_threads(),
        "precisions": ["f32", "f64"],
    });
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "gpu": adapters, "cpu": cpu }))?
        );
        return Ok(());
    }
    if adapters.is_empty() {
        println!(
            "GPU adapters: none found (install a Vulkan driver, e.g. `apt-get install -y mesa-vulkan-drivers libvulkan1` for lavapipe)"
        );
    }
    for (i, a) in adapters.iter().enumerate() {
        let soft = if a.software {
            "  [software adapter]"
        } else {
            ""
        };
        println!(
            "gpu {i}: {} — {} {}{soft}",
            a.name, a.backend, a.device_type
        );
        println!("    driver: {} {}", a.driver, a.driver_info);
        println!(
            "    features: f64 {}, timestamps {}, subgroups {}",
            yes(a.shader_f64),
            yes(a.timestamp_query),
            yes(a.subgroup)
        );
        println!(
            "    limits: storage binding {} MiB, buffer {} MiB, {} workgroups/dim, {} invocations/group, {} KiB shared, {} storage buffers/stage",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroups_per_dimension,
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_storage_buffers_per_shader_stage
        );
    }
    println!(
        "cpu: gradfree CPU backend (Rust + rayon), {} threads, f32 and f64",
        rayon::current_num_threads()
    );
    Ok(())
}

pub(crate) fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
