import CBPF
#if canImport(Glibc)
import Glibc
#endif

/// A pidfd (pidfd_open(2)): how user space names a process to a task-storage
/// map. Closed when released.
final class PIDFD {
    let descriptor: Int32

    init?(_ pid: Int32) {
        let fd = cbpf_pidfd_open(pid)
        guard fd >= 0 else { return nil }
        descriptor = fd
    }

    deinit { close(descriptor) }
}
