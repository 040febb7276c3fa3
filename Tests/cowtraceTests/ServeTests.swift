import CowTraceSelfTest
import CowTraceFormat
import CowTraceMetrics
import CowTraceKit
import CowTraceTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `cowtrace serve` end to end: a real Prometheus scrapes it while a
/// workload whose copies are known runs under it; bad input gets one line.
final class ServeTests: XCTestCase {
    /// Everything started by a test; tearDown stops what still runs, even after a failure.
    private var started: [Process] = []
    private var temporaryDirectories: [URL] = []
    /// Cgroups made by a test, removed (once empty) by tearDown.
    private var cgroupDirectories: [String] = []

    override func tearDown() {
        for p in started.reversed() where p.isRunning {
            kill(p.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while p.isRunning && Date() < deadline { usleep(50_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        }
        started.removeAll()
        for d in cgroupDirectories {
            for _ in 0..<50 where rmdir(d) != 0 && errno == EBUSY { usleep(100_000) }
        }
        cgroupDirectories.removeAll()
        for d in temporaryDirectories { try? FileManager.default.removeItem(at: d) }
        temporaryDirectories.removeAll()
        super.tearDown()
    }

    // MARK: the real Prometheus

    func testPrometheusScrapesTheChildsCopies() throws {
        try requireBPF()
        let prometheus = try requirePrometheus()
        let pages = 4096
        let (serve, port, tier) = try startServe(["--group-by", "pid", "-c", workloadPath, "--pages", "\(pages)", "child:write:0:\(pages)", "child:exit"])
        let report = try waitForWorkloadReport(serve)
        let child = try XCTUnwrap(report.child)

        // The exposition itself: valid for promtool, and whether it holds histograms yet.
        let exposition = try Self.get(port: port, "/metrics")
        XCTAssertEqual(exposition.status, 200)
        if let promtool = Self.which("promtool") {
            let check = try Self.run(promtool, ["check", "metrics"], input: exposition.body)
            XCTAssertEqual(check.status, 0, "promtool check metrics: \(check.stdout)\(check.stderr)")
        }
        let hasHistograms = exposition.body.split(separator: "\n").contains { $0.hasPrefix("cowtrace_") && $0.contains("_count{") }

        let (webPort, prometheusLog) = try startPrometheus(prometheus, scraping: port)

        // The child's copies, as Prometheus stored them.
        let copies = try waitForQuery(port: webPort, #"cowtrace_write_protect_faults_total{class="copy"}"#, log: prometheusLog) { results in
            results.first { $0.labels["pid"] == "\(child)" }
        }
        XCTAssertEqual(copies.labels["comm"], "cowtrace-worklo")
        XCTAssertEqual(Int(copies.value), pages, accuracy: Scenario.tolerance(for: pages),
                       "child \(child) copies on tier \(tier) (\(Scenario.toleranceDescription))")
        let up = try waitForQuery(port: webPort, #"up{job="cowtrace"}"#, log: prometheusLog) { $0.first }
        XCTAssertEqual(up.value, 1)
        let info = try waitForQuery(port: webPort, "cowtrace_info", log: prometheusLog) { $0.first }
        XCTAssertEqual(info.labels["tier"], tier)
        // cowtrace's own cost, through Prometheus's OpenMetrics parser (# UNIT, _created).
        let programRuns = try waitForQuery(port: webPort, "cowtrace_bpf_program_run_seconds_total", log: prometheusLog) { $0.first }
        XCTAssertNotNil(programRuns.labels["program"])
        let statsGauge = try waitForQuery(port: webPort, "cowtrace_bpf_stats_enabled", log: prometheusLog) { $0.first }
        XCTAssertEqual(statsGauge.value, KernelFacts.bpfStatsEnabled() == true ? 1 : 0)

        // The child's burst histogram, bucketed in the kernel: every copy lands
        // in one interval, so its _sum is the child's copies.
        XCTAssertTrue(hasHistograms, "the exposition has no histogram")
        let burstSum = try waitForQuery(port: webPort, #"cowtrace_copies_per_interval_sum"#, log: prometheusLog) { results in
            results.first { $0.labels["pid"] == "\(child)" }
        }
        XCTAssertEqual(Int(burstSum.value), pages, accuracy: Scenario.tolerance(for: pages), "copies-per-interval _sum of the child")
        let burstCount = try waitForQuery(port: webPort, #"cowtrace_copies_per_interval_count"#, log: prometheusLog) { results in
            results.first { $0.labels["pid"] == "\(child)" }
        }
        XCTAssertGreaterThan(burstCount.value, 0)

        // The command's end did not stop the server; Ctrl-C does, cleanly.
        XCTAssertTrue(serve.isRunning)
        serve.interrupt()
        let status = try waitForExit(serve, seconds: 20)
        XCTAssertEqual(status, 0, serve.stderr)
        XCTAssertTrue(serve.stderr.contains("exited with status 0; its counts stay served"), serve.stderr)
        XCTAssertFalse(serve.stderr.contains("Error"), serve.stderr)
    }

    /// Two temporary memory cgroups: a runs three workloads one after the
    /// other (each forks a child that copies and exits), b one. Prometheus
    /// must see one series per cgroup whose copied bytes are the workloads'
    /// frame truth (pagemap), that never decreases while the processes exit,
    /// and an exemplar carrying a workload's pid.
    func testPrometheusSeesPerCgroupSeriesThatNeverDecreaseAndAnExemplar() throws {
        try requireBPF()
        let prometheus = try requirePrometheus()
        let hierarchy = try XCTUnwrap(MemoryCgroupHierarchy.live(), "no memory cgroup hierarchy on this host")
        let plan: [(name: String, runs: Int, pages: Int)] = [("a", 3, 1024), ("b", 1, 2048)]
        var paths: [String: String] = [:]
        let gate = try temporaryDirectory().appendingPathComponent("go").path
        var script = "while [ ! -e \(gate) ]; do sleep 0.1; done; "
        for p in plan {
            let dir = hierarchy.mountPoint + "/cowtrace-serve-test-\(getpid())-\(p.name)"
            XCTAssertTrue(mkdir(dir, 0o755) == 0 || errno == EEXIST, "mkdir \(dir): \(String(cString: strerror(errno)))")
            cgroupDirectories.append(dir)
            paths[p.name] = try XCTUnwrap(hierarchy.cgroupPath(ofDirectory: dir))
            let run = "\(workloadPath) --pages \(p.pages) child:write:0:\(p.pages) child:exit"
            let runs = (1...p.runs).map(String.init).joined(separator: " ")
            script += "sh -c 'echo $$ > \(dir)/cgroup.procs; for i in \(runs); do sleep 1.5; \(run); done' & "
        }
        script += "wait"
        let (serve, port, tier) = try startServe(["-c", "sh", "-c", script])
        let (webPort, prometheusLog) = try startPrometheus(prometheus, scraping: port)
        let startTime = Date().timeIntervalSince1970
        // Prometheus scrapes before the workloads start (it finds its target some 5 s after starting).
        let up = try waitForQuery(port: webPort, #"up{job="cowtrace"}"#, log: prometheusLog) { $0.first { $0.value == 1 } }
        XCTAssertEqual(up.value, 1)
        FileManager.default.createFile(atPath: gate, contents: nil)

        // Every workload's report; which cgroup it ran in is told by its page count.
        var reports: [Workload.Report] = []
        let deadline = Date().addingTimeInterval(90)
        while reports.count < plan.map(\.runs).reduce(0, +) && Date() < deadline {
            reports = serve.stdout.split(separator: "\n").filter { $0.contains("\"workload\"") }
                .compactMap { try? JSONDecoder().decode(Workload.Report.self, from: Data($0.utf8)) }
            usleep(200_000)
        }
        XCTAssertEqual(reports.count, 4, "stdout \(serve.stdout) stderr \(serve.stderr)")

        // The exposition in both formats, and promtool's lint of the text one.
        let text = try Self.get(port: port, "/metrics")
        XCTAssertEqual(text.headers["content-type"], MetricsExposition.contentType)
        XCTAssertFalse(text.body.contains("{pid="), "no pid labels with --group-by cgroup")
        print("serve: " + text.body.split(separator: "\n").filter { $0.hasPrefix("cowtrace_copied_bytes_total") }.joined(separator: "\nserve: "))
        if let promtool = Self.which("promtool") {
            let check = try Self.run(promtool, ["check", "metrics"], input: text.body)
            XCTAssertEqual(check.status, 0, "promtool check metrics: \(check.stdout)\(check.stderr)")
        }
        let om = try httpExchange(port: port, "GET /metrics HTTP/1.0\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n")
        XCTAssertEqual(om.headers["content-type"], ExpositionFormat.openMetrics.contentType)
        XCTAssertTrue(om.body.hasSuffix("# EOF\n"), String(om.body.suffix(200)))

        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        for p in plan {
            let mine = reports.filter { $0.pages == p.pages }
            XCTAssertEqual(mine.count, p.runs)
            let truthPages = mine.reduce(0) { sum, r in
                sum + [r.frames?.parent, r.frames?.child].compactMap { $0 }.reduce(0) { $0 + $1.copied + $1.file_copied }
            }
            XCTAssertGreaterThanOrEqual(truthPages, p.runs * p.pages, "the children copied what they wrote")
            // Slack: the frame-truth tolerance per run below and above; above also
            // 160 pages per run for the shell in the cgroup, which forks twice a run
            // (sleep, the workload): what it and its child write before exec is
            // copied in the cgroup too, and no frame truth covers it.
            let below = p.runs * Scenario.tolerance(for: p.pages), above = below + p.runs * 160
            let path = paths[p.name]!
            let selector = "cowtrace_copied_bytes_total{cgroup=\"\(path)\"}"
            let got = try waitForQuery(port: webPort, selector, log: prometheusLog) { results in
                results.first { $0.value / pageSize >= Double(truthPages - below) && $0.value / pageSize <= Double(truthPages + above) }
            }
            print("serve: cgroup \(path): Prometheus has \(Int(got.value)) bytes copied (\(Int(got.value / pageSize)) pages), frame truth \(truthPages) pages = \(Int(Double(truthPages) * pageSize)) bytes (slack -\(below)/+\(above) pages, tier \(tier))")
            XCTAssertNil(got.labels["pid"])

            // Never decreased across the scrapes, while its processes exited one by one.
            let resets = try waitForQuery(port: webPort, "resets(\(selector)[10m])", log: prometheusLog) { $0.first }
            XCTAssertEqual(resets.value, 0, "\(selector) decreased")
            let samples = try rangeQuery(port: webPort, selector, start: startTime, end: Date().timeIntervalSince1970)
            XCTAssertEqual(samples, samples.sorted(), "successive samples of \(selector)")
            if p.runs > 1 { XCTAssertGreaterThanOrEqual(Set(samples).count, 2, "the series grew across the runs: \(samples)") }

            // An exemplar with the pid of one of this cgroup's workloads.
            let pids = Set(mine.flatMap { [$0.parent] + ($0.child.map { [$0] } ?? []) }.map { "\($0)" })
            let exemplars = try queryExemplars(port: webPort, selector, start: startTime - 60, end: Date().timeIntervalSince1970 + 60)
            XCTAssertTrue(exemplars.contains { pids.contains($0["pid"] ?? "") && $0["comm"] == "cowtrace-worklo" },
                          "no exemplar with a workload pid \(pids.sorted()) in \(exemplars)")
        }
        let series = try waitForQuery(port: webPort, "count(cowtrace_copied_bytes_total)", log: prometheusLog) { $0.first }
        print("serve: \(Int(series.value)) series of cowtrace_copied_bytes_total (\(plan.count) test cgroups + the shell's)")
        XCTAssertLessThanOrEqual(Int(series.value), plan.count + 1, "one series per cgroup the traced processes ran in")
        serve.interrupt()
        XCTAssertEqual(try waitForExit(serve, seconds: 20), 0, serve.stderr)
    }

    /// A short-lived process seen for the first time after it exited: its copies count in the
    /// cgroup it ran in. The workload (a parent and its copying child) runs in a cgroup of its
    /// own under a `sleep` that never reaps it, and the first scrape comes once it is a zombie.
    /// On a v1 hierarchy the kernel shows a zombie in the root cgroup; read as it stands, the
    /// child's copies went to cgroup="/" (as in a CI run of the Prometheus test above).
    /// Truth: the workload's pagemap frames; the test's own cgroup directory.
    func testCopiesOfAProcessFirstSeenAsAZombieCountInItsCgroup() throws {
        try requireBPF()
        let hierarchy = try XCTUnwrap(MemoryCgroupHierarchy.live(), "no memory cgroup hierarchy on this host")
        let directory = hierarchy.mountPoint + "/cowtrace-serve-zombie-\(getpid())"
        XCTAssertTrue(mkdir(directory, 0o755) == 0 || errno == EEXIST, "mkdir \(directory): \(String(cString: strerror(errno)))")
        cgroupDirectories.append(directory)
        let path = try XCTUnwrap(hierarchy.cgroupPath(ofDirectory: directory))
        let pages = 2048
        // The shell moves itself into the cgroup, starts the workload there and becomes
        // `sleep` (exec), which never waits for it.
        let script = "echo $$ > \(directory)/cgroup.procs && { \(workloadPath) --pages \(pages) child:write:0:\(pages) child:exit & exec sleep 120; }"
        let (serve, port, tier) = try startServe(["-c", "sh", "-c", script])
        let report = try waitForWorkloadReport(serve)
        // A zombie now, and not read before: serve reads the kernel's maps only when scraped.
        var state = ""
        for _ in 0..<500 where state != "Z" {
            state = readPseudoFile("/proc/\(report.parent)/stat").flatMap(ProcFS.statFields)?.first.map(String.init) ?? ""
            if state != "Z" { usleep(10_000) }
        }
        XCTAssertEqual(state, "Z", "the workload \(report.parent) is a zombie under sleep")
        let body = try Self.get(port: port, "/metrics").body
        let selector = "cowtrace_copied_bytes_total{cgroup=\"\(path)\"}"
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let copied = body.split(separator: "\n").first { $0.hasPrefix(selector + " ") }
            .flatMap { Int($0.split(separator: " ").last!) }.map { $0 / pageSize } ?? 0
        let truth = [report.frames?.parent, report.frames?.child].compactMap { $0 }.reduce(0) { $0 + $1.copied + $1.file_copied }
        XCTAssertGreaterThanOrEqual(truth, pages, "the child copied what it wrote")
        // Slack: the frame truth's tolerance below and above, and 160 pages above for the shell's
        // fork of the workload (what the workload writes before its own fork is copied too).
        let below = Scenario.tolerance(for: pages), above = below + 160
        print("serve: zombie workload \(report.parent) in \(path): \(copied) pages copied, frame truth \(truth) (slack -\(below)/+\(above), tier \(tier))")
        XCTAssertTrue(copied >= truth - below && copied <= truth + above,
                      "\(path): \(copied) pages copied, frame truth \(truth); series: " +
                      body.split(separator: "\n").filter { $0.hasPrefix("cowtrace_copied_bytes_total{") }.joined(separator: "; "))
        serve.interrupt()
        XCTAssertEqual(try waitForExit(serve, seconds: 20), 0, serve.stderr)
    }

    // MARK: the endpoint without Prometheus

    func testEndpointServesTheChildsCopiesAndStopsOnSIGTERM() throws {
        try requireBPF()
        let pages = 2000
        let (serve, port, _) = try startServe(["--group-by", "pid", "--top", "5", "-c", workloadPath, "--pages", "4096", "child:write:0:\(pages)", "child:exit"])
        let report = try waitForWorkloadReport(serve)
        let child = try XCTUnwrap(report.child)
        let r = try Self.get(port: port, "/metrics")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.headers["content-type"], MetricsExposition.contentType)
        XCTAssertEqual(r.headers["connection"], "close")
        let line = try XCTUnwrap(r.body.split(separator: "\n").first {
            $0.hasPrefix("cowtrace_write_protect_faults_total{pid=\"\(child)\",") && $0.contains("class=\"copy\"")
        }, r.body)
        XCTAssertEqual(Int(line.split(separator: " ").last!)!, pages, accuracy: Scenario.tolerance(for: pages))
        // The exited child's series outlive its removal from the kernel's maps (at the next read).
        let childSeries = { (body: String) in
            body.split(separator: "\n").filter { $0.contains("{pid=\"\(child)\",") }.map(String.init).sorted()
        }
        let first = childSeries(r.body)
        XCTAssertEqual(childSeries(try Self.get(port: port, "/metrics").body), first)
        XCTAssertEqual(childSeries(try Self.get(port: port, "/metrics").body), first)
        if r.body.contains("cowtrace_copies_per_interval_count{") {
            XCTAssertTrue(first.contains { $0.hasPrefix("cowtrace_copies_per_interval_count{") }, r.body)
        }
        // cowtrace's own cost: one series per attached program, and the kernel's
        // bpf_stats_enabled, with a one-time hint on stderr when it is off.
        let statsOn = KernelFacts.bpfStatsEnabled()!
        XCTAssertTrue(r.body.contains("\ncowtrace_bpf_stats_enabled \(statsOn ? 1 : 0)\n"), r.body)
        let programs = r.body.split(separator: "\n").filter { $0.hasPrefix("cowtrace_bpf_program_runs_total{program=\"") }
        XCTAssertGreaterThanOrEqual(programs.count, 3, r.body)
        XCTAssertEqual(r.body.split(separator: "\n").filter { $0.hasPrefix("cowtrace_bpf_program_run_seconds_total{program=\"") }.count,
                       programs.count)
        let hint = "kernel.bpf_stats_enabled is 0: cowtrace_bpf_program_runs_total and cowtrace_bpf_program_run_seconds_total do not grow; turn on with sysctl kernel.bpf_stats_enabled=1"
        XCTAssertEqual(serve.stderr.components(separatedBy: hint).count - 1, statsOn ? 0 : 1, serve.stderr)
        XCTAssertEqual(try Self.get(port: port, "/metrics", method: "HEAD").body, "")
        XCTAssertEqual(try Self.get(port: port, "/nope").status, 404)
        XCTAssertTrue(try Self.get(port: port, "/").body.contains("href=\"/metrics\""))

        kill(serve.process.processIdentifier, SIGTERM)
        XCTAssertEqual(try waitForExit(serve, seconds: 20), 0, serve.stderr)
    }

    /// A snapshot child copying 64 MiB at 16 MiB/s has fork-risk series while
    /// it lives: shared bytes at most the region (the workload's own size) and
    /// falling as it copies, this host's headroom (MemAvailable + SwapFree,
    /// 10 % slack), at_risk 0; the series end with the fork.
    func testServeExportsTheForkRiskOfALiveSnapshotChild() throws {
        try requireBPF()
        let pages = 16384
        let (serve, port, _) = try startServe(["-c", workloadPath, "--rate", "16", "--pages", "\(pages)", "child:write:0:\(pages)", "child:exit"])
        func forkSamples() throws -> [String: Double] {
            var out: [String: Double] = [:]
            for line in try Self.get(port: port, "/metrics").body.split(separator: "\n") where line.hasPrefix("cowtrace_fork_") {
                let name = String(line.prefix { $0 != "{" })
                out[name] = Double(line.split(separator: " ").last!)
            }
            return out
        }
        var samples: [[String: Double]] = []
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let s = try forkSamples()
            if !s.isEmpty { samples.append(s) } else if !samples.isEmpty { break }
            usleep(500_000)
        }
        XCTAssertGreaterThanOrEqual(samples.count, 3, "fork series seen in \(samples.count) scrapes: \(serve.stderr)")
        let region = Double(pages * 4096)
        let meminfo = try String(contentsOfFile: "/proc/meminfo", encoding: .utf8)
        func kB(_ key: String) -> Double { Double(meminfo.split(separator: "\n").first { $0.hasPrefix(key + ":") }?.split(separator: " ")[1] ?? "0").map { $0 * 1024 } ?? 0 }
        for s in samples {
            XCTAssertEqual(s["cowtrace_fork_at_risk"], 0)
            XCTAssertLessThanOrEqual(try XCTUnwrap(s["cowtrace_fork_shared_bytes"]), region + Double(2 << 20))
            XCTAssertEqual(try XCTUnwrap(s["cowtrace_fork_headroom_bytes"]), kB("MemAvailable") + kB("SwapFree"), accuracy: (kB("MemAvailable") + kB("SwapFree")) * 0.1)
        }
        let shared = samples.compactMap { $0["cowtrace_fork_shared_bytes"] }
        XCTAssertLessThan(shared.last!, shared.first!, "shared bytes fall as the child copies: \(shared)")
        XCTAssertGreaterThan(samples.compactMap { $0["cowtrace_fork_copy_rate_bytes"] }.max() ?? 0, 8 * 1_048_576, "a 16 MiB/s copier")
    }

    /// Without -p, -c or --cgroup serve traces every process (--all): a
    /// workload it did not start shows up with the copies its child made.
    func testWithoutASelectionEveryProcessIsServed() throws {
        try requireBPF()
        let pages = 2000
        let (serve, port, _) = try startServe(["--group-by", "pid", "--top", "100000"])
        let run = try runProduct("cowtrace-workload", ["--pages", "4096", "child:write:0:\(pages)", "child:exit"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let line = try XCTUnwrap(run.stdout.split(separator: "\n").last { $0.contains("\"workload\"") }, run.stdout)
        let child = try XCTUnwrap(try JSONDecoder().decode(Workload.Report.self, from: Data(line.utf8)).child)
        let body = try Self.get(port: port, "/metrics").body
        let copies = try XCTUnwrap(body.split(separator: "\n").first {
            $0.hasPrefix("cowtrace_write_protect_faults_total{pid=\"\(child)\",") && $0.contains("class=\"copy\"")
        }, "the child of a workload serve did not start is served: \(body.prefix(2000))")
        XCTAssertEqual(Int(copies.split(separator: " ").last!)!, pages, accuracy: Scenario.tolerance(for: pages))
        kill(serve.process.processIdentifier, SIGTERM)
        XCTAssertEqual(try waitForExit(serve, seconds: 20), 0, serve.stderr)
    }

    func testExitWithCommandPassesItsStatusOn() throws {
        try requireBPF()
        let r = try cowtrace(["serve", "--listen", "127.0.0.1:0", "--exit-with-command", "-c", "sh", "-c", "exit 3"])
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains("serving http://127.0.0.1:"), r.stderr)
    }

    func testNonLoopbackAddressWarnsOnce() throws {
        try requireBPF()
        let r = try cowtrace(["serve", "--listen", "0.0.0.0:0", "--exit-with-command", "-c", "true"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let warnings = r.stderr.split(separator: "\n").filter { $0.hasPrefix("warning: 0.0.0.0:") && $0.contains(" is not a loopback address") }
        XCTAssertEqual(warnings.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("serving http://0.0.0.0:"), r.stderr)
    }

    // MARK: bad input (no BPF needed: the port is bound first)

    func testPortInUseIsOneLineError() throws {
        let (fd, port) = try Self.listeningSocket()
        defer { close(fd) }
        let r = try cowtrace(["serve", "--listen", "127.0.0.1:\(port)"])
        assertOneLineError(r, contains: "127.0.0.1:\(port) is already in use (EADDRINUSE): stop the other server or pass --listen 127.0.0.1:PORT")
    }

    func testUnknownFlag() throws {
        assertOneLineError(try cowtrace(["serve", "--bogus"]), contains: "Unknown option '--bogus'")
    }

    func testBadAddressSaysWhatIsExpected() throws {
        assertOneLineError(try cowtrace(["serve", "--listen", "localhost"]),
                           contains: "bad listen address 'localhost': expected IPV4:PORT (127.0.0.1:9464) or [IPV6]:PORT ([::1]:9464)")
    }

    func testTopMustBePositive() throws {
        assertOneLineError(try cowtrace(["serve", "--top", "0"]), contains: "--top must be at least 1")
    }

    func testMaxGroupsMustBePositiveAndGroupByKnown() throws {
        assertOneLineError(try cowtrace(["serve", "--max-groups", "0"]), contains: "--max-groups must be at least 1")
        assertOneLineError(try cowtrace(["serve", "--group-by", "host"]), contains: "--group-by")
    }

    func testHelpTeachesAScrapeConfig() throws {
        let r = try cowtrace(["serve", "--help"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("scrape_configs:"), r.stdout)
        XCTAssertTrue(r.stdout.contains("- targets: ['127.0.0.1:9464']"), r.stdout)
        XCTAssertTrue(r.stdout.contains("--exit-with-command"), r.stdout)
    }

    // MARK: helpers

    private var workloadPath: String { builtProductsDirectory().appendingPathComponent("cowtrace-workload").path }
    private var cowtracePath: String { builtProductsDirectory().appendingPathComponent("cowtrace").path }

    /// A real Prometheus (exemplar storage on) scraping 127.0.0.1:PORT every second:
    /// its web port, and the tail of its log.
    private func startPrometheus(_ prometheus: String, scraping port: UInt16) throws -> (UInt16, () -> Substring) {
        let directory = try temporaryDirectory()
        let webPort = try Self.freePort()
        let config = directory.appendingPathComponent("prometheus.yml")
        try """
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: cowtrace
                static_configs:
                  - targets: ['127.0.0.1:\(port)']

            """.write(to: config, atomically: true, encoding: .utf8)
        let log = directory.appendingPathComponent("prometheus.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: prometheus)
        server.arguments = ["--config.file=\(config.path)", "--storage.tsdb.path=\(directory.appendingPathComponent("data").path)",
                            "--web.listen-address=127.0.0.1:\(webPort)", "--enable-feature=exemplar-storage"]
        let logHandle = try FileHandle(forWritingTo: log)
        server.standardOutput = logHandle
        server.standardError = logHandle
        try server.run()
        started.append(server)
        let prometheusLog = { String(decoding: (try? Data(contentsOf: log)) ?? Data(), as: UTF8.self).suffix(2000) }

        return (webPort, prometheusLog)
    }

    /// The values of a range query's first series, one a second.
    private func rangeQuery(port: UInt16, _ query: String, start: Double, end: Double) throws -> [Double] {
        let r = try Self.get(port: port, "/api/v1/query_range?query=\(Self.encode(query))&start=\(start)&end=\(end)&step=1")
        let object = try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any]
        let data = object?["data"] as? [String: Any]
        let result = (data?["result"] as? [[String: Any]])?.first
        return ((result?["values"] as? [[Any]]) ?? []).compactMap { ($0.last as? String).flatMap(Double.init) }
    }

    /// The label sets of the exemplars Prometheus stored for `query`.
    private func queryExemplars(port: UInt16, _ query: String, start: Double, end: Double) throws -> [[String: String]] {
        var found: [[String: String]] = []
        let deadline = Date().addingTimeInterval(30)
        repeat {
            let r = try Self.get(port: port, "/api/v1/query_exemplars?query=\(Self.encode(query))&start=\(start)&end=\(end)")
            let object = try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any]
            for series in (object?["data"] as? [[String: Any]]) ?? [] {
                for e in (series["exemplars"] as? [[String: Any]]) ?? [] {
                    if let labels = e["labels"] as? [String: String] { found.append(labels) }
                }
            }
            if !found.isEmpty { return found }
            usleep(500_000)
        } while Date() < deadline
        return found
    }

    static func encode(_ query: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return query.addingPercentEncoding(withAllowedCharacters: allowed)!
    }

    private func requirePrometheus() throws -> String {
        if let path = Self.which("prometheus") { return path }
        let reason = "the prometheus binary is not installed (Debian package prometheus: run scripts/setup)"
        if ProcessInfo.processInfo.environment["COWTRACE_REQUIRE_BPF"] == "1" {
            XCTFail("COWTRACE_REQUIRE_BPF=1 but \(reason)")
        } else {
            print("skipping: \(reason)")
        }
        throw XCTSkip(reason)
    }

    /// A running `cowtrace serve`, its output collected as it comes.
    final class Running {
        let process: Process
        private let out = Collected(), err = Collected()
        init(_ process: Process, stdout: Pipe, stderr: Pipe) {
            self.process = process
            out.follow(stdout.fileHandleForReading)
            err.follow(stderr.fileHandleForReading)
        }
        var stdout: String { out.text }
        var stderr: String { err.text }
        var isRunning: Bool { process.isRunning }
        func interrupt() { process.interrupt() }
    }

    final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var data = Data()
        func follow(_ handle: FileHandle) {
            Thread.detachNewThread { [self] in
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { return }
                    lock.lock(); data.append(chunk); lock.unlock()
                }
            }
        }
        var text: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }
    }

    /// Starts `cowtrace serve --listen 127.0.0.1:0 ARGS` and waits for its
    /// "serving http://127.0.0.1:PORT/metrics (tier: T)" line.
    private func startServe(_ arguments: [String]) throws -> (Running, UInt16, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: cowtracePath)
        process.arguments = ["serve", "--listen", "127.0.0.1:0"] + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        started.append(process)
        let running = Running(process, stdout: out, stderr: err)
        let pattern = #"serving http://127\.0\.0\.1:([0-9]+)/metrics \(tier: ([a-z]+)\)"#
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let text = running.stderr
            if let m = text.range(of: pattern, options: .regularExpression) {
                let line = String(text[m])
                let port = line.split(separator: ":")[2].split(separator: "/")[0]
                let tier = line.split(separator: " ").last!.dropLast()
                return (running, UInt16(port)!, String(tier))
            }
            if !process.isRunning { break }
            usleep(50_000)
        }
        XCTFail("cowtrace serve did not say where it serves: \(running.stderr)")
        throw XCTSkip("cowtrace serve did not start")
    }

    private func waitForWorkloadReport(_ serve: Running) throws -> Workload.Report {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let line = serve.stdout.split(separator: "\n").last(where: { $0.contains("\"workload\"") }),
               let report = try? JSONDecoder().decode(Workload.Report.self, from: Data(line.utf8)) {
                return report
            }
            XCTAssertTrue(serve.isRunning, "serve ended early: \(serve.stderr)")
            if !serve.isRunning { break }
            usleep(50_000)
        }
        XCTFail("the workload never reported: stdout \(serve.stdout) stderr \(serve.stderr)")
        throw XCTSkip("no workload report")
    }

    private func waitForExit(_ serve: Running, seconds: Double) throws -> Int32 {
        let deadline = Date().addingTimeInterval(seconds)
        while serve.isRunning && Date() < deadline { usleep(50_000) }
        XCTAssertFalse(serve.isRunning, "cowtrace serve did not stop within \(seconds) s")
        if serve.isRunning { throw XCTSkip("still running") }
        return serve.process.terminationStatus
    }

    struct QueryResult { var labels: [String: String]; var value: Double }

    /// Polls Prometheus' instant-query API until `pick` finds a result (60 s at most).
    private func waitForQuery(port: UInt16, _ query: String, log: () -> Substring,
                              pick: ([QueryResult]) -> QueryResult?) throws -> QueryResult {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let encoded = query.addingPercentEncoding(withAllowedCharacters: allowed)!
        let deadline = Date().addingTimeInterval(60)
        var last = ""
        while Date() < deadline {
            if let r = try? Self.get(port: port, "/api/v1/query?query=\(encoded)") {
                last = r.body
                if r.status == 200,
                   let object = try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any],
                   let data = object["data"] as? [String: Any], let result = data["result"] as? [[String: Any]] {
                    let parsed = result.compactMap { item -> QueryResult? in
                        guard let labels = item["metric"] as? [String: String], let value = item["value"] as? [Any],
                              value.count == 2, let text = value[1] as? String, let number = Double(text) else { return nil }
                        return QueryResult(labels: labels, value: number)
                    }
                    if let found = pick(parsed) { return found }
                }
            }
            usleep(500_000)
        }
        XCTFail("Prometheus never answered \(query): last answer \(last); its log: \(log())")
        throw XCTSkip("query timed out")
    }

    struct CommandResult { let status: Int32; let stdout: String; let stderr: String }

    /// Runs cowtrace to its end (killed after 60 s).
    private func cowtrace(_ arguments: [String]) throws -> CommandResult {
        try Self.run(cowtracePath, arguments, timeout: 60)
    }

    static func run(_ path: String, _ arguments: [String], input: String? = nil, timeout: Double = 60) throws -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let out = Pipe(), err = Pipe(), inPipe = Pipe()
        process.standardOutput = out
        process.standardError = err
        if input != nil { process.standardInput = inPipe }
        try process.run()
        if let input {
            inPipe.fileHandleForWriting.write(Data(input.utf8))
            try inPipe.fileHandleForWriting.close()
        }
        let o = Collected(), e = Collected()
        o.follow(out.fileHandleForReading)
        e.follow(err.fileHandleForReading)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        usleep(100_000) // the readers drain the pipes
        return CommandResult(status: process.terminationStatus, stdout: o.text, stderr: e.text)
    }

    private func assertOneLineError(_ r: CommandResult, contains text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, "must fail", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(text), "stderr was: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.hasPrefix("Error:") }.count, 1, "one Error: line", file: file, line: line)
    }

    private func temporaryDirectory() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("cowtrace-serve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        temporaryDirectories.append(d)
        return d
    }

    static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") + ["/usr/bin", "/usr/sbin"] {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// A socket listening on 127.0.0.1 at a port the kernel picked.
    static func listeningSocket() throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { close(fd); throw Errno.current }
        return (fd, UInt16(bigEndian: a.sin_port))
    }

    /// A port nobody listens on right now.
    static func freePort() throws -> UInt16 {
        let (fd, port) = try listeningSocket()
        close(fd)
        return port
    }

    /// GET (or HEAD) over HTTP/1.0 on 127.0.0.1, read to the end.
    static func get(port: UInt16, _ path: String, method: String = "GET") throws -> HTTPResponse {
        try httpExchange(port: port, "\(method) \(path) HTTP/1.0\r\nHost: 127.0.0.1:\(port)\r\n\r\n")
    }
}
