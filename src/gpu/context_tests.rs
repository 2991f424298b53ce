//! Tests of `GpuContext`: typed errors for validation, device loss and
//! oversized buffers.

use std::io::Write;

use super::*;

/// A context; without an adapter the test fails where a GPU is
/// required (CI) and says it skipped elsewhere.
fn ctx() -> Option<GpuContext> {
    match GpuContext::new() {
        Ok(ctx) => Some(ctx),
        Err(e) if gpu_required_by_env() => panic!("a GPU adapter is required: {e}"),
        Err(e) => {
            // Written past the test harness's capture, so the skip is visible.
            let _ = writeln!(std::io::stderr(), "skipped: no GPU adapter ({e})");
            None
        }
    }
}

#[test]
fn validation_errors_surface_as_typed_errors() {
    let Some(ctx) = ctx() else { return };
    let layout = ctx
        .device()
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("expects a uniform"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            }],
        });
    let storage = ctx
        .create_buffer("storage only", 16, wgpu::BufferUsages::STORAGE)
        .unwrap();
    ctx.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("wrong usage"),
        layout: &layout,
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: storage.as_entire_binding(),
        }],
    });
    assert!(matches!(ctx.check(), Err(LstmError::Gpu(_))));
    assert!(ctx.check().is_ok(), "check() clears the error");
}

#[test]
fn a_lost_device_is_reported() {
    let Some(ctx) = ctx() else { return };
    ctx.device().destroy();
    let _ = ctx.device().poll(wgpu::PollType::Poll);
    assert!(matches!(ctx.check(), Err(LstmError::DeviceLost(_))));
}

#[test]
fn oversized_buffers_name_the_limit() {
    let Some(ctx) = ctx() else { return };
    let max = ctx.limits().max_buffer_size;
    let err = ctx
        .create_buffer("huge", max + 4, wgpu::BufferUsages::COPY_DST)
        .unwrap_err();
    assert!(matches!(
        err,
        LstmError::DeviceLimit {
            limit: "max_buffer_size",
            ..
        }
    ));
}
