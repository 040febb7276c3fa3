#if canImport(Glibc)
import Glibc
#endif

/// How a process ended, decoded from the kernel's task->exit_code or a
/// waitpid(2) status: both are `status << 8 | signal`, with 0x80 set when the
/// signal dumped core. Every place that prints how a process ended uses this,
/// so a crash reads "killed by SIGSEGV" everywhere, never "status 139".
public struct ExitStatus: Equatable, Sendable, CustomStringConvertible {
    public let raw: Int32

    public init(raw: Int32) { self.raw = raw }
    public init(raw: UInt32) { self.raw = Int32(bitPattern: raw) }

    /// What waitpid gives nothing for (the process is not our child, or was
    /// reaped elsewhere): status 255, so a caller still fails.
    public static let notOurChild = ExitStatus(raw: Int32(0xff << 8))

    /// The signal that killed it; nil when it called exit().
    public var signal: Int32? { raw & 0x7f == 0 ? nil : raw & 0x7f }
    /// The value it passed to exit() (meaningless when `signal` is set).
    public var status: Int32 { (raw >> 8) & 0xff }
    public var coreDumped: Bool { signal != nil && raw & 0x80 != 0 }

    /// What a shell's `$?` would say: the exit status, or 128 + the signal.
    public var shellCode: Int32 { signal.map { 128 + $0 } ?? status }

    /// "exited with status 3", "killed by SIGSEGV (core dumped)".
    public var description: String {
        guard let signal else { return "exited with status \(status)" }
        return "killed by \(Self.signalName(signal))" + (coreDumped ? " (core dumped)" : "")
    }

    /// The legend under a table whose exited rows carry *: "(* exited)", with
    /// the rows a signal killed named ("; 1234 killed by SIGSEGV"), since a
    /// crash or a kill is worth seeing and a plain exit is what * already says.
    public static func exitedLegend(_ exited: [(pid: Int32, exit: ExitStatus?)]) -> String {
        let killed = exited.compactMap { row in row.exit.flatMap { $0.signal != nil ? "\(row.pid) \($0)" : nil } }
        return "(* exited" + (killed.isEmpty ? "" : "; " + killed.joined(separator: ", ")) + ")\n"
    }

    /// "SIGSEGV"; real-time signals as "SIGRTMIN+n"; unknown ones as "signal n".
    public static func signalName(_ signal: Int32) -> String {
        if let name = names.first(where: { $0.0 == signal })?.1 { return "SIG" + name }
        // SIGRTMIN is a libc function (glibc keeps the first few for itself).
        let rtMin = __libc_current_sigrtmin(), rtMax = __libc_current_sigrtmax()
        if signal >= rtMin && signal <= rtMax { return signal == rtMin ? "SIGRTMIN" : "SIGRTMIN+\(signal - rtMin)" }
        return "signal \(signal)"
    }

    // Numbers from libc, names as kill -l prints them.
    private static let names: [(Int32, String)] = [
        (SIGHUP, "HUP"), (SIGINT, "INT"), (SIGQUIT, "QUIT"), (SIGILL, "ILL"), (SIGTRAP, "TRAP"),
        (SIGABRT, "ABRT"), (SIGBUS, "BUS"), (SIGFPE, "FPE"), (SIGKILL, "KILL"), (SIGUSR1, "USR1"),
        (SIGSEGV, "SEGV"), (SIGUSR2, "USR2"), (SIGPIPE, "PIPE"), (SIGALRM, "ALRM"), (SIGTERM, "TERM"),
        (SIGSTKFLT, "STKFLT"), (SIGCHLD, "CHLD"), (SIGCONT, "CONT"), (SIGSTOP, "STOP"), (SIGTSTP, "TSTP"),
        (SIGTTIN, "TTIN"), (SIGTTOU, "TTOU"), (SIGURG, "URG"), (SIGXCPU, "XCPU"), (SIGXFSZ, "XFSZ"),
        (SIGVTALRM, "VTALRM"), (SIGPROF, "PROF"), (SIGWINCH, "WINCH"), (SIGIO, "IO"), (SIGPWR, "PWR"),
        (SIGSYS, "SYS"),
    ]
}
