// swift-tools-version:6.1
// Coffer's benchmarks: a package of its own, so that the benchmark library and its malloc interposer are
// built only when benchmarks run, never by `swift test` at the top level.
//   cd benchmarks && swift package benchmark
import PackageDescription

let package = Package(
    name: "coffer-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "coffer", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "CofferBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "CofferClient", package: "coffer"),
                .product(name: "CofferServer", package: "coffer"),
                .product(name: "CofferStore", package: "coffer"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/CofferBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
