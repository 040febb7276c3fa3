/// Errors of the simulated system calls, named by their errno.
public enum MMError: Error, Equatable, CustomStringConvertible {
    /// ENOMEM: the overcommit policy refused the charge, or no memory was left.
    case outOfMemory(String)
    /// EINVAL: a bad address, length or flag combination.
    case invalidArgument(String)
    /// ESRCH: no live process with this pid.
    case noSuchProcess(Int32)
    /// EBADF: no such file.
    case badFile(String)

    public var description: String {
        switch self {
        case .outOfMemory(let why): return "ENOMEM: \(why)"
        case .invalidArgument(let why): return "EINVAL: \(why)"
        case .noSuchProcess(let pid): return "ESRCH: no live process \(pid)"
        case .badFile(let why): return "EBADF: \(why)"
        }
    }
}
