//! NVIDIA GPUs through NVML, loaded at run time (`dlopen("libnvidia-ml.so.1")`): no NVIDIA
//! library is needed to build, and a machine without one reports "not available". Energy comes
//! from the board's own counter (mJ, Volta and later), power in mW, clocks in MHz.

use super::{Counter, EnergyKind, Metric, Reading, Source, Throttle};
use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr};

type Device = *mut c_void;

#[repr(C)]
#[derive(Default)]
struct Memory {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// The NVML entry points bakeoff calls; all return `nvmlReturn_t` (0 = success).
struct Api {
    shutdown: unsafe extern "C" fn() -> c_int,
    energy: Option<unsafe extern "C" fn(Device, *mut c_ulonglong) -> c_int>,
    power: unsafe extern "C" fn(Device, *mut c_uint) -> c_int,
    clock: unsafe extern "C" fn(Device, c_int, *mut c_uint) -> c_int,
    temperature: unsafe extern "C" fn(Device, c_int, *mut c_uint) -> c_int,
    throttle: Option<unsafe extern "C" fn(Device, *mut c_ulonglong) -> c_int>,
    memory: unsafe extern "C" fn(Device, *mut Memory) -> c_int,
}

pub struct Nvml {
    api: Api,
    devices: Vec<Device>,
    handle: *mut c_void,
}

const CLOCK_SM: c_int = 1;
const CLOCK_MEM: c_int = 2;
const TEMPERATURE_GPU: c_int = 0;

/// `nvmlClocksThrottleReasons` bits worth a "noisy" flag (idle and application clocks are not).
const THROTTLE_REASONS: [(u64, &str); 6] = [
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal"),
    (0x40, "hw_thermal"),
    (0x80, "hw_power_brake"),
];

/// A symbol of `handle`, cast to the function type the caller names.
unsafe fn symbol<T: Copy>(handle: *mut c_void, name: &CStr) -> Option<T> {
    let ptr = libc::dlsym(handle, name.as_ptr());
    (!ptr.is_null()).then(|| std::mem::transmute_copy::<*mut c_void, T>(&ptr))
}

fn dl_error() -> String {
    // SAFETY: dlerror returns a thread-local C string or null.
    let text = unsafe { libc::dlerror() };
    if text.is_null() {
        return "unknown dlopen error".into();
    }
    unsafe { CStr::from_ptr(text as *const c_char) }
        .to_string_lossy()
        .into_owned()
}

impl Nvml {
    /// NVML initialised with its devices, or why not (library absent, init failed, no device).
    pub fn probe() -> Result<Nvml, String> {
        // SAFETY: dlopen/dlsym with NUL-terminated names; every symbol is checked before use and
        // cast to the signature NVML documents for it.
        unsafe {
            let handle = libc::dlopen(
                c"libnvidia-ml.so.1".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            );
            if handle.is_null() {
                return Err(format!("libnvidia-ml.so.1 not loadable: {}", dl_error()));
            }
            let loaded = Self::load(handle);
            if loaded.is_err() {
                libc::dlclose(handle);
            }
            loaded
        }
    }

    unsafe fn load(handle: *mut c_void) -> Result<Nvml, String> {
        let missing = |name: &str| format!("libnvidia-ml.so.1 lacks {name}");
        let init: unsafe extern "C" fn() -> c_int =
            symbol(handle, c"nvmlInit_v2").ok_or_else(|| missing("nvmlInit_v2"))?;
        let count: unsafe extern "C" fn(*mut c_uint) -> c_int =
            symbol(handle, c"nvmlDeviceGetCount_v2")
                .ok_or_else(|| missing("nvmlDeviceGetCount_v2"))?;
        let by_index: unsafe extern "C" fn(c_uint, *mut Device) -> c_int =
            symbol(handle, c"nvmlDeviceGetHandleByIndex_v2")
                .ok_or_else(|| missing("nvmlDeviceGetHandleByIndex_v2"))?;
        let api = Api {
            shutdown: symbol(handle, c"nvmlShutdown").ok_or_else(|| missing("nvmlShutdown"))?,
            energy: symbol(handle, c"nvmlDeviceGetTotalEnergyConsumption"),
            power: symbol(handle, c"nvmlDeviceGetPowerUsage")
                .ok_or_else(|| missing("nvmlDeviceGetPowerUsage"))?,
            clock: symbol(handle, c"nvmlDeviceGetClockInfo")
                .ok_or_else(|| missing("nvmlDeviceGetClockInfo"))?,
            temperature: symbol(handle, c"nvmlDeviceGetTemperature")
                .ok_or_else(|| missing("nvmlDeviceGetTemperature"))?,
            throttle: symbol(handle, c"nvmlDeviceGetCurrentClocksThrottleReasons"),
            memory: symbol(handle, c"nvmlDeviceGetMemoryInfo")
                .ok_or_else(|| missing("nvmlDeviceGetMemoryInfo"))?,
        };
        let status = init();
        if status != 0 {
            return Err(format!("nvmlInit_v2 returned {status}"));
        }
        let mut n: c_uint = 0;
        let status = count(&mut n);
        let devices: Vec<Device> = (0..n)
            .filter_map(|i| {
                let mut device: Device = std::ptr::null_mut();
                (by_index(i, &mut device) == 0).then_some(device)
            })
            .collect();
        if status != 0 || devices.is_empty() {
            (api.shutdown)();
            return Err(format!(
                "NVML sees no device (nvmlDeviceGetCount_v2 returned {status}, {n} devices)"
            ));
        }
        Ok(Nvml {
            api,
            devices,
            handle,
        })
    }

    /// One device's readings; a call that fails is left out.
    unsafe fn device_readings(&self, index: usize, device: Device) -> Vec<Reading> {
        let source = format!("nvml:{index}");
        let reading = |name: &str, metric, value| Reading {
            source: source.clone(),
            name: name.into(),
            metric,
            value,
        };
        let mut out = Vec::new();
        let mut value: c_uint = 0;
        if (self.api.power)(device, &mut value) == 0 {
            out.push(reading("power", Metric::PowerW, value as f64 / 1e3));
        }
        if (self.api.temperature)(device, TEMPERATURE_GPU, &mut value) == 0 {
            out.push(reading("temp:gpu", Metric::TempC, value as f64));
        }
        for (name, clock) in [("clock:sm", CLOCK_SM), ("clock:mem", CLOCK_MEM)] {
            if (self.api.clock)(device, clock, &mut value) == 0 {
                out.push(reading(name, Metric::ClockMhz, value as f64));
            }
        }
        let mut memory = Memory::default();
        if (self.api.memory)(device, &mut memory) == 0 {
            out.push(reading("vram", Metric::MemUsedBytes, memory.used as f64));
        }
        out
    }

    unsafe fn device_throttle(&self, index: usize, device: Device) -> Vec<Throttle> {
        let Some(throttle) = self.api.throttle else {
            return Vec::new();
        };
        let mut bits: c_ulonglong = 0;
        if throttle(device, &mut bits) != 0 {
            return Vec::new();
        }
        THROTTLE_REASONS
            .iter()
            .filter(|(bit, _)| bits & bit != 0)
            .map(|(_, reason)| Throttle {
                source: format!("nvml:{index}"),
                reason: reason.to_string(),
            })
            .collect()
    }
}

impl Source for Nvml {
    fn read(&mut self) -> (Vec<Reading>, Vec<Throttle>) {
        let mut readings = Vec::new();
        let mut throttles = Vec::new();
        for (i, &device) in self.devices.iter().enumerate() {
            // SAFETY: devices came from NVML, which stays initialised until drop.
            unsafe {
                readings.extend(self.device_readings(i, device));
                throttles.extend(self.device_throttle(i, device));
            }
        }
        (readings, throttles)
    }

    fn counters(&mut self) -> Vec<Counter> {
        let Some(energy) = self.api.energy else {
            return Vec::new();
        };
        self.devices
            .iter()
            .enumerate()
            .filter_map(|(i, &device)| {
                let mut mj: c_ulonglong = 0;
                // SAFETY: as in `read`.
                (unsafe { energy(device, &mut mj) } == 0).then(|| Counter {
                    source: format!("nvml:{i}"),
                    kind: EnergyKind::Gpu,
                    joules: mj as f64 / 1e3,
                    wrap_j: None,
                })
            })
            .collect()
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: initialised in `probe`; the handle is closed once, after the last call.
        unsafe {
            (self.api.shutdown)();
            libc::dlclose(self.handle);
        }
    }
}
