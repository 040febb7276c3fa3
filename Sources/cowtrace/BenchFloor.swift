import ArgumentParser
import CowTraceKit
import Foundation

struct BenchFloor: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-floor",
        abstract: "Attach empty BPF programs to the tracepoint tier's hooks (benchmark floor).",
        discussion: """
            For scripts/bench: what running any BPF program on each page fault, page \
            allocation and rss change costs this kernel, with cowtrace's own logic removed. \
            Runs until interrupted, or until the command given with -c exits.

            Example:
              sudo cowtrace bench-floor -c cowtrace-workload --storm 8 --mib 256
            """,
        shouldDisplay: false
    )

    @Option(name: [.customShort("c"), .customLong("command")], parsing: .remaining,
            help: ArgumentHelp("Run this command while the empty programs are attached.", valueName: "command args"))
    var command: [String] = []

    func run() throws {
        do {
            StopSignal.install()
            let floor = try EmptyProgramsFloor()
            defer { floor.close() }
            if command.isEmpty {
                while !StopSignal.isRequested { StopSignal.sleep(1) }
            } else {
                let pid = try Subprocess.spawn(command).pid
                let status = Subprocess.waitForExit(pid)
                if status.shellCode != 0 {
                    FileHandle.standardError.write(Data("cowtrace: \(command.joined(separator: " ")) \(status)\n".utf8))
                    throw ExitCode(status.shellCode)
                }
            }
        } catch let e as ExitCode { throw e } catch { throw cliError(error) }
    }
}
