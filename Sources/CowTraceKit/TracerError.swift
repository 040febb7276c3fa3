import CowTraceFormat
/// What went wrong while setting up or running the tracer: each case says
/// what failed, why (errno where the kernel said no), and what to do.
public enum TracerError: Error, CustomStringConvertible {
    case notPrivileged(missing: [String])
    case btfMissing(path: String)
    case openObject(Errno)
    case loadFailed(tier: AttachTier, errno: Errno, detail: String)
    case attachFailed(tier: AttachTier, program: String, errno: Errno)
    case tierUnavailable(tier: AttachTier, reason: String)
    case noTierAvailable([TierAttempt])
    case mapAccess(map: String, operation: String, errno: Errno)
    /// The BPF object has no map of that name (Swift and bpf/*.bpf.c disagree).
    case unknownMap(map: String, object: String)
    /// A map's key or value size in the BPF object is not the Swift type's.
    case mapSizeMismatch(map: String, object: String, part: String, bpfSize: Int, swiftType: String, swiftSize: Int)
    /// A map is not of the kind the Swift code reads it as (ring buffer or keyed map).
    case mapTypeMismatch(map: String, object: String, expected: String, found: String)
    /// The BPF object has no program of that name.
    case unknownProgram(program: String, object: String)
    /// Running a program from user space (BPF_PROG_TEST_RUN) failed.
    case programRun(program: String, object: String, errno: Errno)
    case noSuchProcess(pid: Int32)
    /// Every process slot is taken (TracerOptions.maxProcesses).
    case processTableFull(pid: Int32)
    case badCgroup(path: String, reason: String)
    case commandFailedToStart(command: String, errno: Errno)
    case workloadNotFound(searched: [String])
    case workloadFailed(arguments: [String], status: ExitStatus, output: String)
    /// An output file the user named could not be written.
    case output(path: String, problem: String)

    public var description: String {
        switch self {
        case .notPrivileged(let missing):
            return "cowtrace needs \(missing.joined(separator: " and ")) to load BPF programs: run it as root (sudo cowtrace ...) or grant CAP_BPF and CAP_PERFMON"
        case .btfMissing(let path):
            return "this kernel has no BTF (\(path) is missing): cowtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu, Fedora and RHEL kernels have it)"
        case .openObject(let errno):
            return "cannot open the embedded BPF object: \(errno); rebuild cowtrace"
        case .loadFailed(let tier, let errno, let detail):
            var hint = detail.isEmpty ? "" : ": \(detail)"
            if tier == .fentry && errno == .notPermitted {
                hint = ": the kernel refuses BPF trampolines here (lockdown, or no DYNAMIC_FTRACE_WITH_DIRECT_CALLS)"
            }
            return "loading the \(tier) tier failed: \(errno)\(hint); run `cowtrace doctor` to see every tier's reason"
        case .attachFailed(let tier, let program, let errno):
            return "attaching \(program) (\(tier) tier) failed: \(errno); run `cowtrace doctor` to see what this kernel allows"
        case .tierUnavailable(let tier, let reason):
            return "the \(tier) tier is not available here: \(reason); drop --tier to let cowtrace pick one"
        case .noTierAvailable(let attempts):
            let reasons = attempts.map { "\($0.tier): \($0.failure ?? "?")" }.joined(separator: "; ")
            return "no attach tier works on this kernel (\(reasons)); run `cowtrace doctor` for details"
        case .mapAccess(let map, let operation, let errno):
            return "\(operation) on BPF map \(map) failed: \(errno)"
        case .unknownMap(let map, let object):
            return "the BPF object \(object) has no map named \(map): the Swift code and bpf/\(object).bpf.c disagree; fix the name, then rebuild cowtrace (swift build)"
        case .mapSizeMismatch(let map, let object, let part, let bpfSize, let swiftType, let swiftSize):
            return "BPF map \(map) of the object \(object) has a \(part) size of \(bpfSize) bytes, but the Swift type \(swiftType) is \(swiftSize) bytes: make the map's \(part) type in bpf/\(object).bpf.c and the Swift type agree (bpf/*.h), then rebuild cowtrace"
        case .mapTypeMismatch(let map, let object, let expected, let found):
            return "BPF map \(map) of the object \(object) is \(found), but cowtrace reads it as \(expected): make bpf/\(object).bpf.c and the Swift code agree, then rebuild cowtrace"
        case .unknownProgram(let program, let object):
            return "the BPF object \(object) has no program named \(program): the Swift code and bpf/\(object).bpf.c disagree; fix the name, then rebuild cowtrace (swift build)"
        case .programRun(let program, let object, let errno):
            return "running the BPF program \(program) of \(object) (BPF_PROG_TEST_RUN) failed: \(errno); the kernel needs BPF_PROG_TYPE_SYSCALL (5.14+) and CAP_BPF: run `cowtrace doctor`"
        case .noSuchProcess(let pid):
            return "no process with pid \(pid): check the pid with `ps -p \(pid)` (it may have exited)"
        case .processTableFull(let pid):
            return "cannot start counting pid \(pid): every process slot is taken; raise --max-processes"
        case .badCgroup(let path, let reason):
            return "bad cgroup \(path): \(reason); pass a cgroup directory such as /sys/fs/cgroup/system.slice/NAME.service (v2) or /sys/fs/cgroup/memory/NAME (v1)"
        case .commandFailedToStart(let command, let errno):
            return "cannot start `\(command)`: \(errno); check the command name and PATH"
        case .workloadNotFound(let searched):
            return "cannot find the cowtrace-workload program (looked in \(searched.joined(separator: ", "))): build it with `swift build` or set COWTRACE_WORKLOAD=/path/to/cowtrace-workload"
        case .workloadFailed(let arguments, let status, let output):
            let last = output.split(whereSeparator: \.isNewline).last.map(String.init) ?? "no output"
            return "cowtrace-workload \(arguments.joined(separator: " ")) \(status) (last output: \(last)); run it by hand to see its error"
        case .output(let path, let problem):
            return "cannot write \(path): \(problem)"
        }
    }
}
