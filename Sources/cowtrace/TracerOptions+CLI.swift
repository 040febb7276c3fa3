import CowTraceFormat
import ArgumentParser
import CowTraceKit
#if canImport(Glibc)
import Glibc
#endif

/// Options every tracing subcommand shares.
struct TierOptions: ParsableArguments, OptionChecks {
    @Option(help: ArgumentHelp("Use only this attach tier: fentry, kprobe or tracepoint. Default: the best one this kernel allows (see `cowtrace doctor`).", valueName: "tier"))
    var tier: AttachTier?

    @Option(help: "Room in the kernel's maps for this many processes (and as many threads with stat --threads); those beyond it are counted as lost.")
    var maxProcesses: UInt32 = 16384

    @Flag(help: "Print libbpf's messages (verifier log, attach details) to stderr.")
    var verbose = false

    func checkOptions() throws {
        if maxProcesses < 1 { throw ValidationError("--max-processes must be at least 1") }
    }

    func tracerOptions() -> TracerOptions {
        var options = TracerOptions()
        options.tier = tier
        options.maxProcesses = maxProcesses
        options.verbose = verbose
        return options
    }
}

extension AttachTier: ExpressibleByArgument {}
extension OutputFormat: ExpressibleByArgument {}

/// Turns a TracerError into the one-line message and non-zero exit the CLI promises.
struct CLIError: Error, CustomStringConvertible {
    let description: String
}

func cliError(_ error: Error) -> Error {
    if let e = error as? TracerError { return CLIError(description: e.description) }
    return error
}

/// SIGINT/SIGTERM set a flag; loops check it, print a final table and detach.
enum StopSignal {
    /// The signal that asked us to stop; 0 while none has.
    nonisolated(unsafe) static var requested: sig_atomic_t = 0

    static func install() {
        let handler: @convention(c) (Int32) -> Void = { StopSignal.requested = $0 }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
    }

    static var isRequested: Bool { requested != 0 }
    static var signalNumber: Int32? { requested == 0 ? nil : Int32(requested) }

    /// Sleeps up to `seconds`, waking early on a stop request or when `until` is true.
    static func sleep(_ seconds: Double, until: () -> Bool = { false }) {
        let deadline = Double(DispatchTimeShim.now()) + seconds
        while !isRequested && !until() && Double(DispatchTimeShim.now()) < deadline {
            usleep(20_000)
        }
    }
}

enum DispatchTimeShim {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
