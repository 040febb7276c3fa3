/// cowtrace's version, written into recordings, reports and metrics.
public enum CowTraceVersion {
    /// The one place the version is set: scripts/package names the .deb after it.
    public static let current = "0.3.0"
}
