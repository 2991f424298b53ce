//! How `Device::auto()` chooses. One test in its own binary, because it sets
//! `WGPU_LSTM_DEVICE`, which the whole process shares.

mod common;

use wgpu_lstm::Device;
use wgpu_lstm::gpu::list_adapters;

#[test]
fn auto_takes_a_hardware_gpu_else_the_cpu_engine_and_obeys_wgpu_lstm_device() {
    let set = |value: Option<&str>| {
        // SAFETY: this binary's only test; no other thread reads the
        // environment meanwhile.
        unsafe {
            match value {
                Some(v) => std::env::set_var("WGPU_LSTM_DEVICE", v),
                None => std::env::remove_var("WGPU_LSTM_DEVICE"),
            }
        }
    };
    let software = |name: &str| {
        let name = name.to_lowercase();
        [
            "llvmpipe",
            "lavapipe",
            "swiftshader",
            "microsoft basic render",
        ]
        .iter()
        .any(|s| name.contains(s))
    };
    let adapters = list_adapters();
    let hardware = adapters
        .iter()
        .any(|a| a.info.device_type != wgpu::DeviceType::Cpu && !software(&a.info.name));

    set(None);
    let auto = Device::auto();
    assert_eq!(auto.is_gpu(), hardware, "{auto:?}, adapters {adapters:?}");
    if !hardware {
        // On CI's lavapipe: the CPU engine, named as such.
        assert!(format!("{auto:?}").contains("cpu"), "{auto:?}");
    }

    set(Some("cpu"));
    assert!(!Device::auto().is_gpu());

    set(Some("gpu"));
    let chosen = Device::auto();
    if common::gpu::gpu_or_skip("auto with WGPU_LSTM_DEVICE=gpu").is_some() {
        // The adapter, even a software one, because it was asked for.
        assert!(chosen.is_gpu(), "{chosen:?}");
        let name = &chosen.gpu_context().unwrap().adapter_info().name;
        assert!(format!("{chosen:?}").contains(name.as_str()), "{chosen:?}");
    }
    set(None);

    // Settings that belong to the other kind of device are typed errors.
    assert!(Device::cpu().with_threads(0).is_err());
    assert_eq!(
        format!("{:?}", Device::cpu().with_threads(3).unwrap()),
        "Device(cpu (3 threads))"
    );
    assert!(
        Device::cpu()
            .with_precision(wgpu_lstm::Precision::F16)
            .is_err()
    );
    if let Some(ctx) = common::gpu::gpu_or_skip("gpu device settings") {
        assert!(Device::from_context(ctx).with_threads(2).is_err());
    }
}
