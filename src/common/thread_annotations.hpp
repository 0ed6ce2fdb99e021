// Clang's thread-safety annotations (-Wthread-safety), as in
// https://clang.llvm.org/docs/ThreadSafetyAnalysis.html. Under GCC they
// expand to nothing. scripts/check_thread_safety.sh compiles src/ with
// Clang and fails on any finding.
#pragma once

#if defined(__clang__)
#define SKYLAB_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define SKYLAB_THREAD_ANNOTATION(x)
#endif

//! A class that is a lock (Mutex).
#define CAPABILITY(x) SKYLAB_THREAD_ANNOTATION(capability(x))
//! An RAII class that holds a capability for its lifetime (MutexLock).
#define SCOPED_CAPABILITY SKYLAB_THREAD_ANNOTATION(scoped_lockable)
//! A member read or written only with `x` held.
#define GUARDED_BY(x) SKYLAB_THREAD_ANNOTATION(guarded_by(x))
//! A pointer whose pointee is read or written only with `x` held.
#define PT_GUARDED_BY(x) SKYLAB_THREAD_ANNOTATION(pt_guarded_by(x))
//! Lock order: this lock is taken before / after the named ones.
#define ACQUIRED_BEFORE(...) SKYLAB_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) SKYLAB_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
//! The caller must hold the named locks (exclusively / shared).
#define REQUIRES(...) SKYLAB_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) SKYLAB_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
//! The function takes / releases the named locks (none named: `this`).
#define ACQUIRE(...) SKYLAB_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) SKYLAB_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) SKYLAB_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
//! The caller must NOT hold the named locks (the function takes them).
#define EXCLUDES(...) SKYLAB_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
//! After the call the analysis treats the lock as held (a runtime no-op here).
#define ASSERT_CAPABILITY(x) SKYLAB_THREAD_ANNOTATION(assert_capability(x))
//! The function returns a reference to the named lock.
#define RETURN_CAPABILITY(x) SKYLAB_THREAD_ANNOTATION(lock_returned(x))
//! Turns the analysis off for one function. Every use says why in a comment.
#define NO_THREAD_SAFETY_ANALYSIS SKYLAB_THREAD_ANNOTATION(no_thread_safety_analysis)
