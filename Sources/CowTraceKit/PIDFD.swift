import CBPF
#if canImport(Glibc)
import Glibc
#endif

/// A pidfd (pidfd_open(2)): one process, named so that a reused pid cannot be
/// mistaken for it (trace(pid:) checks it did not exit while its slot was
/// being claimed). Closed when released.
final class PIDFD {
    let descriptor: Int32

    init?(_ pid: Int32) {
        let fd = cbpf_pidfd_open(pid)
        guard fd >= 0 else { return nil }
        descriptor = fd
    }

    deinit { close(descriptor) }

    /// The process has exited (it may still be a zombie): a pidfd polls
    /// readable then. It refers to one process, so a reused pid cannot fool it.
    var hasExited: Bool {
        var p = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) > 0
    }
}
