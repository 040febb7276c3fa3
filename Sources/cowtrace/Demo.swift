import CowTraceSelfTest
import ArgumentParser
import CowTraceKit
import Foundation

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Trace a built-in fork workload and explain what the numbers mean.",
        discussion: """
            A parent fills 64 MiB and reads 8 MiB (mapping the shared zero page), then forks. \
            The child writes 16 MiB (each page copied), the parent writes 24 MiB while the \
            child lives (copied again), the child exits, the parent writes the rest (reused: \
            nobody else maps those pages any more) and writes the zero-page region (zero fills).

            Examples:
              sudo cowtrace demo
              sudo cowtrace demo --tier tracepoint
            """
    )

    @OptionGroup var tierOptions: TierOptions

    static let pages = 16384, childPages = 4096, parentLivePages = 6144, zeroPages = 2048

    func run() throws {
        do { try demo() } catch let e as ExitCode { throw e } catch { throw cliError(error) }
    }

    private func demo() throws {
        let workload = try Workload.locate()
        var options = tierOptions.tracerOptions()
        options.selection.followSpawnedChildren = true
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        let p = Self.pages, c = Self.childPages, live = Self.parentLivePages, z = Self.zeroPages
        // --zero-pages z+1: the workload writes the last page before the fork
        // (so the region's page table is copied) and steps leave it out.
        let arguments = ["--pages", "\(p)", "--zero-pages", "\(z + 1)",
                         "child:write:0:\(c)",
                         "parent:write:\(c):\(c + live)",
                         "child:exit",
                         "parent:write:\(c + live):\(p)",
                         "parent:write:0:\(c)",
                         "parent:zwrite:0:\(z)"]
        print("cowtrace demo (tier: \(tracer.tier))")
        print("running: cowtrace-workload \(arguments.joined(separator: " "))\n")
        let report = try workload.run(arguments)
        let snapshot = try tracer.snapshot()
        let table = ProcessTable(snapshot: snapshot, tier: tracer.tier, pageSize: tracer.pageSize)
        var renderer = TableRenderer(format: .text)
        print(renderer.render(table, at: Date(), final: true))

        let parent = snapshot.counters[report.parent] ?? ProcessCounters()
        let child = report.child.flatMap { snapshot.counters[$0] } ?? ProcessCounters()
        let mib = { (pages: Int) in String(format: "%.0f MiB", Double(pages * report.page_size) / 1_048_576) }
        var allMatch = true
        func line(_ what: String, _ counted: UInt64, _ expected: Int) {
            let ok = abs(Int(counted) - expected) <= Scenario.tolerance(for: expected)
            allMatch = allMatch && ok
            print("  \(ok ? "✓" : "✗") \(what): counted \(counted), the workload did \(expected)")
        }
        print("What happened, and what the kernel counted (slack: \(Scenario.toleranceDescription)):")
        print("- The parent (pid \(report.parent)) filled \(mib(p)) and forked. Nothing was copied at fork:")
        print("  parent and child shared every page, write-protected.")
        print("- The child (pid \(report.child ?? 0)) wrote \(mib(c)): each write copied a 4 KiB page.")
        line("child copies", child.copies, c)
        print("- While the child lived, the parent wrote \(mib(live)) more: still shared, so copied too.")
        print("- After the child exited, the parent wrote the rest, and the \(mib(c)) the child had copied:")
        print("  it was the only owner left, so the kernel reused its pages without copying.")
        line("parent copies", parent.copies, live)
        line("parent reuses", parent.reuses, p - live)
        print("- The parent had only read \(mib(z)) before the fork: those pages were the shared zero page,")
        print("  so its writes got fresh zeroed pages (zero fills), no data copied.")
        line("parent zero fills", parent.zeroFills, z)
        let copiedMiB = Double(child.bytesCopied(pageSize: tracer.pageSize) + parent.bytesCopied(pageSize: tracer.pageSize)) / 1_048_576
        print(String(format: "\nIn all, this fork cost %.1f MiB of copying, of %@ mapped.", copiedMiB, mib(p + z)))
        if !allMatch {
            print("Some counts are off by more than the slack: run `cowtrace selftest` and `cowtrace doctor`.")
            throw ExitCode(1)
        }
    }
}
