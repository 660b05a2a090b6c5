//! The five libnftables calls vznet needs, loaded at run time.
//!
//! Loading with `dlopen` keeps the build free of a link-time dependency on
//! `libnftables-dev`; Debian's `nftables` package already ships the runtime
//! library (`libnftables1`).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};

use libloading::{Library, Symbol};

/// `NFT_CTX_DEFAULT`.
const NFT_CTX_DEFAULT: u32 = 0;
/// `NFT_CTX_OUTPUT_JSON`: JSON output, and JSON input for `nft_run_cmd_from_buffer`.
const NFT_CTX_OUTPUT_JSON: c_uint = 1 << 4;

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type SetFlags = unsafe extern "C" fn(*mut c_void, c_uint);
type Buffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type GetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// One libnftables context. Not `Send`: it stays on the thread (and so in the
/// netns) that created it.
pub(crate) struct Context {
    lib: Library,
    ctx: *mut c_void,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// Loads libnftables and makes a JSON context whose output and errors are
    /// buffered for us to read.
    pub(crate) fn new() -> Result<Context, String> {
        // SAFETY: loading the system's libnftables runs its (trivial) initialisers.
        let lib = unsafe { Library::new("libnftables.so.1") }
            .map_err(|e| format!("libnftables.so.1: {e}"))?;
        // SAFETY: the symbol types match libnftables.h (nftables 0.9 to 1.1).
        let ctx = unsafe {
            let new: Symbol<CtxNew> = sym(&lib, b"nft_ctx_new\0")?;
            let set_flags: Symbol<SetFlags> = sym(&lib, b"nft_ctx_output_set_flags\0")?;
            let buf_out: Symbol<Buffer> = sym(&lib, b"nft_ctx_buffer_output\0")?;
            let buf_err: Symbol<Buffer> = sym(&lib, b"nft_ctx_buffer_error\0")?;
            let ctx = new(NFT_CTX_DEFAULT);
            if ctx.is_null() {
                return Err("nft_ctx_new failed".into());
            }
            set_flags(ctx, NFT_CTX_OUTPUT_JSON);
            buf_out(ctx);
            buf_err(ctx);
            ctx
        };
        Ok(Context { lib, ctx })
    }

    /// Runs one JSON document (one transaction). Returns libnftables' output.
    pub(crate) fn run(&mut self, json: &str) -> Result<String, String> {
        let cmd = CString::new(json).map_err(|_| "document contains a NUL byte".to_string())?;
        // SAFETY: ctx is live; the buffers returned are owned by ctx and read
        // before the next call.
        unsafe {
            let run: Symbol<RunCmd> = sym(&self.lib, b"nft_run_cmd_from_buffer\0")?;
            let out: Symbol<GetBuffer> = sym(&self.lib, b"nft_ctx_get_output_buffer\0")?;
            let err: Symbol<GetBuffer> = sym(&self.lib, b"nft_ctx_get_error_buffer\0")?;
            let rc = run(self.ctx, cmd.as_ptr());
            let output = text(out(self.ctx));
            let error = text(err(self.ctx));
            if rc == 0 {
                Ok(output)
            } else if error.trim().is_empty() {
                Err(format!("libnftables returned {rc}"))
            } else {
                Err(error.trim().to_string())
            }
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: ctx came from nft_ctx_new and is freed once.
        unsafe {
            if let Ok(free) = sym::<CtxFree>(&self.lib, b"nft_ctx_free\0") {
                free(self.ctx);
            }
        }
    }
}

/// # Safety
/// `T` must be the symbol's true type.
unsafe fn sym<'l, T>(lib: &'l Library, name: &[u8]) -> Result<Symbol<'l, T>, String> {
    // SAFETY: forwarded to the caller.
    unsafe { lib.get(name) }.map_err(|e| format!("libnftables: {e}"))
}

/// # Safety
/// `p` is null or a NUL-terminated string.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: forwarded to the caller.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}
