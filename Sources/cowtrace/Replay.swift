import ArgumentParser
import CowTraceFormat
import CowTraceKit
import CowTraceReplay
import Foundation

/// Reads a recording for `replay` and `check`: one-line errors, and a note on
/// stderr when the file was cut or salvaged.
struct RecordingInput: ParsableArguments {
    @Argument(help: ArgumentHelp("A recording written by `cowtrace record`.", valueName: "file"))
    var file: String

    @Flag(help: "Read a damaged file up to the damage instead of refusing it.")
    var salvage = false

    /// The recording through the model, read twice (`ReplayPrepass`, then the
    /// replay) and never held in memory, with header problems as one-line errors.
    func replay() throws -> ReplayResult {
        RecordingInput.keepLargeBuffersMapped()
        var prepass: ReplayPrepass
        // The blocks' checksums are computed by the first read only (the file is read twice).
        var checksums = BlockChecksums()
        let summary: TraceSummary
        do {
            (prepass, summary) = try ReplayPrepass.read(path: file, salvage: salvage, checksums: &checksums)
        } catch {
            throw CLIError(description: "\(error)")
        }
        noteCut(summary.cut)
        let replayer: TraceReplayer
        do {
            replayer = try TraceReplayer(header: summary.header)
        } catch {
            throw CLIError(description: "cannot replay this recording: \(error)")
        }
        do {
            return try replayer.replay(consume prepass) { (feed: inout ReplayFeed) in
                try TraceFileReader.visitRecords(path: file, salvage: salvage, checksums: &checksums, &feed)
            }
        } catch {
            throw CLIError(description: "\(error)")
        }
    }

    /// Fixes glibc's mmap threshold at 384 KiB. The replay's large buffers
    /// (the time-order merger's and verdict queue's arrays, the fault log)
    /// grow by doubling, and glibc raises its threshold to the size of each
    /// mmapped buffer freed: the next ones come from the brk heap instead,
    /// where the holes they leave stay resident. With the threshold fixed,
    /// every buffer above it is mapped and goes back to the OS when freed:
    /// about 10 bytes less per snapshot page at check's peak (BENCHMARKS.md,
    /// "Memory per snapshot page"), and no measurable time (buffers of a few
    /// hundred KiB, made per block of records, stay on the heap).
    /// (mallopt is looked up at run time: Swift's Glibc module has no malloc.h.)
    private static func keepLargeBuffersMapped() {
        #if canImport(Glibc)
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        let M_MMAP_THRESHOLD: Int32 = -3 // malloc.h
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "mallopt") else { return }
        _ = unsafeBitCast(symbol, to: Mallopt.self)(M_MMAP_THRESHOLD, 384 << 10)
        #endif
    }

    /// A note on stderr when the file was cut or salvaged.
    private func noteCut(_ cut: TraceCut?) {
        switch cut {
        case .noEndRecord(let offset)?:
            FileHandle.standardError.write(Data("cowtrace: \(file): recording cut at offset \(offset): no end record (the recorder was killed); every record before it was read\n".utf8))
        case .damaged(let offset, let problem)?:
            FileHandle.standardError.write(Data("cowtrace: \(file): salvaged the records before offset \(offset) (\(problem))\n".utf8))
        case nil:
            break
        }
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay a recording through the simulated MMU and print the model's per-process table.",
        discussion: """
            Every fork, exec, exit, address-space change and page fault of the recording is \
            applied to the simulated MMU (page tables, frames with reference counts), which \
            predicts how each write-protect fault ends: copy, reuse, zero-fill, file copy or \
            shared write. `cowtrace check FILE` compares those predictions with what the \
            kernel said, fault by fault. What the model cannot see (pages touched before \
            tracing, mappings made by exec) is described in docs/replay.md.

            Examples:
              cowtrace replay bgsave.ctr
              cowtrace replay --format json bgsave.ctr
            """
    )

    @OptionGroup var input: RecordingInput

    @Option(help: "Output format: text, json or csv.")
    var format: OutputFormat = .text

    func run() throws {
        let result = try input.replay()
        switch format {
        case .text: print(renderReplay(result), terminator: "")
        case .json: print(renderReplayJSON(result), terminator: "")
        case .csv: print(renderReplayCSV(result), terminator: "")
        }
    }
}

struct Check: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Compare the kernel's class of every recorded write-protect fault with the model's.",
        discussion: """
            Prints, per process and class, what the kernel counted and what the simulated MMU \
            predicts, and every disagreement grouped with its reason. A disagreement is kernel \
            behaviour the model cannot decide when the recording shows the evidence for its \
            reason ("concurrent fault by another sharer of the page": the other fault overlaps \
            it; "events lost in a gap": the gap record), else it is unexplained (with a possible \
            cause, such as "transient reference turned reuse into copy"). Copies the kernel made \
            where a reuse was possible are shown as wasted copies. Also checks that the recorded \
            events add up to the kernel's exact counters. Exits 1 when agreements plus evidenced \
            disagreements are below --min-agreement, or the counters disagree with the events \
            (without a recorded gap to explain it).

            Examples:
              cowtrace check bgsave.ctr
              cowtrace check --min-agreement 99.9 --format json run.ctr
            """
    )

    @OptionGroup var input: RecordingInput

    @Option(help: ArgumentHelp("Lowest share, in percent, of faults that agree or whose disagreement the recording explains, that passes.",
                               valueName: "percent"))
    var minAgreement: Double = TraceCheck.defaultThreshold * 100

    @Option(help: "Output format: text, json or csv (per process and class; the exit status says whether it passed).")
    var format: OutputFormat = .text

    func checkOptions() throws {
        if !(0...100).contains(minAgreement) { throw ValidationError("--min-agreement is a percentage from 0 to 100") }
    }

    func run() throws {
        let check = TraceCheck(result: try input.replay(), threshold: minAgreement / 100)
        switch format {
        case .text: print(renderCheck(check), terminator: "")
        case .json: print(renderCheckJSON(check), terminator: "")
        case .csv: print(renderCheckCSV(check), terminator: "")
        }
        if !check.passed { throw ExitCode(1) }
    }
}
