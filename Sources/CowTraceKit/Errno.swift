#if canImport(Glibc)
import Glibc
#endif

/// A C errno value (`errno.h`), with the symbolic name users search for.
public struct Errno: Error, Equatable, Hashable, CustomStringConvertible, Sendable {
    public let rawValue: Int32

    public init(_ rawValue: Int32) { self.rawValue = abs(rawValue) }

    /// The current thread's `errno`.
    public static var current: Errno { Errno(errno) }

    public static let notPermitted = Errno(EPERM)
    public static let noEntry = Errno(ENOENT)
    public static let noSuchProcess = Errno(ESRCH)
    public static let notSupported = Errno(EOPNOTSUPP)

    public var name: String {
        switch rawValue {
        case EPERM: return "EPERM"
        case ENOENT: return "ENOENT"
        case ESRCH: return "ESRCH"
        case EINTR: return "EINTR"
        case E2BIG: return "E2BIG"
        case EACCES: return "EACCES"
        case EBUSY: return "EBUSY"
        case EEXIST: return "EEXIST"
        case EINVAL: return "EINVAL"
        case ENOSPC: return "ENOSPC"
        case ENOMEM: return "ENOMEM"
        case ENOTSUP: return "EOPNOTSUPP"
        case 524: return "ENOTSUPP"
        case ENOSYS: return "ENOSYS"
        case EFAULT: return "EFAULT"
        case ENODEV: return "ENODEV"
        default: return "errno \(rawValue)"
        }
    }

    public var message: String {
        if rawValue == 524 { return "operation not supported by the kernel" }
        return String(cString: strerror(rawValue)).lowercased()
    }

    public var description: String { "\(message) (\(name))" }
}
