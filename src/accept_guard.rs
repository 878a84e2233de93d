//! The `zcoord` binary's guard against libzmq 4.3.4 aborting the whole process when an ipc
//! accept fails for want of descriptors: `ipc_listener.cpp:325` asserts the failure is one it
//! knows, and its list has `ENFILE` but not `EMFILE`. The binary defines `accept` and `accept4`;
//! rustc exports an executable's `#[no_mangle]` functions, and the dynamic linker looks in the
//! executable first, so libzmq's calls come here (as its `malloc` calls reach jemalloc's
//! unprefixed one): each calls the C library's own and reports `EMFILE` as `ENFILE`, which
//! libzmq survives (`tests/connections.rs` aborts without this, 3 runs of 3). It leaves the
//! connection pending and tries again, as its tcp listener does, until the transport thread's
//! refusals (`transport/connections.rs`) have freed a descriptor.

use std::ffi::c_void;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicPtr, Ordering};

type Accept4 =
    unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t, c_int) -> c_int;

/// The C library's `accept4`, found once.
static REAL_ACCEPT4: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

fn real_accept4() -> Option<Accept4> {
    let mut found = REAL_ACCEPT4.load(Ordering::Acquire);
    if found.is_null() {
        // SAFETY: a symbol lookup in the objects loaded after this one; the name is a C string.
        found = unsafe { libc::dlsym(libc::RTLD_NEXT, c"accept4".as_ptr()) };
        if found.is_null() {
            return None;
        }
        REAL_ACCEPT4.store(found, Ordering::Release);
    }
    // SAFETY: the C library's `accept4`, whose signature this is.
    Some(unsafe { std::mem::transmute::<*mut c_void, Accept4>(found) })
}

/// The C library's `accept4`, with `EMFILE` reported as `ENFILE`.
unsafe fn guarded(
    fd: c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: c_int,
) -> c_int {
    let Some(real) = real_accept4() else {
        // SAFETY: errno is this thread's.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    };
    // SAFETY: the caller's arguments, passed on unchanged.
    let rc = unsafe { real(fd, addr, len, flags) };
    // SAFETY: errno is this thread's.
    unsafe {
        if rc == -1 && *libc::__errno_location() == libc::EMFILE {
            *libc::__errno_location() = libc::ENFILE;
        }
    }
    rc
}

/// # Safety
/// As the C library's `accept4`.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: as the caller's.
    unsafe { guarded(fd, addr, len, flags) }
}

/// # Safety
/// As the C library's `accept`.
#[no_mangle]
pub unsafe extern "C" fn accept(
    fd: c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> c_int {
    // SAFETY: as the caller's; `accept` is `accept4` without flags.
    unsafe { guarded(fd, addr, len, 0) }
}
