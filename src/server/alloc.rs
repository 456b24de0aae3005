//! Allocator settings for a long-running gateway on glibc.
//!
//! glibc's malloc raises its mmap threshold each time a large mmapped block is freed (up to
//! 32 MB), so after one 3 MB request the next big bodies and their parse trees come from the
//! arenas instead, and every arena a worker thread touched keeps its high-water mark. Under
//! agent traffic (50-400 KB bodies, an occasional 3 MB one; bench/big_request.py) RSS went
//! from 22 MB to a 40-43 MB plateau that never came down. Fixing both thresholds at 128 KB
//! keeps large buffers mmapped (returned to the kernel when freed) and lets arenas trim their
//! tops: same run, 28-31 MB, falling back after each big request.

/// Fixes the mmap and trim thresholds, once per process. An operator's own
/// `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` is left alone.
pub fn bound_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            const THRESHOLD: libc::c_int = 128 * 1024;
            for (param, env) in [
                (libc::M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
                (libc::M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_"),
            ] {
                if std::env::var_os(env).is_some() {
                    continue;
                }
                // SAFETY: mallopt only sets a malloc parameter; it is thread-safe in glibc.
                if unsafe { libc::mallopt(param, THRESHOLD) } != 1 {
                    tracing::debug!("mallopt({param}) refused");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bound_heap_is_idempotent() {
        super::bound_heap();
        super::bound_heap();
        // Large blocks still allocate and free normally.
        let v = vec![7u8; 4 << 20];
        assert_eq!(v[v.len() - 1], 7);
    }
}
