import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The process's RLIMIT_NOFILE: every connection to the metrics endpoint
/// holds a descriptor, and the usual soft limit (1024) is below what a
/// thousand idle scrapers need.
public enum FileDescriptorLimit {
    /// Raises the soft limit to the hard limit (no privilege needed) and
    /// returns the limits now in force; nil if getrlimit fails.
    @discardableResult
    public static func raiseSoftToHard() -> (soft: UInt64, hard: UInt64)? {
        var limit = rlimit()
        guard getrlimit(noFile, &limit) == 0 else { return nil }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(noFile, &raised) == 0 { limit = raised }
        }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }

    /// The limits now in force; nil if getrlimit fails.
    public static var current: (soft: UInt64, hard: UInt64)? {
        var limit = rlimit()
        guard getrlimit(noFile, &limit) == 0 else { return nil }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }

    private static var noFile: __rlimit_resource_t { __rlimit_resource_t(UInt32(RLIMIT_NOFILE.rawValue)) }
}
