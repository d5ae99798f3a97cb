using EmaLab.Dashboard.Metrics;
using System.Diagnostics;
using EmaLab.Dashboard;
using EmaLab.Dashboard.Data;
using EmaLab.Dashboard.Runs;
using EmaLab.TrainingEngine.Training;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Hosting.Internal;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using EmaLab.TrainingEngine;
using EmaLab.Dashboard.Hosting;

/// <summary>The metric store as the server builds it: ingestion through <see cref="MetricPipeline"/> and a series read through <see cref="MetricQueries"/>.</summary>
static class StoreBenchmarks
{
    const int Points = 1_000_000;

    public static async Task RunAsync()
    {
        Console.WriteLine("== Metric store: SQLite (WAL) and PostgreSQL (a local throwaway server with fsync), same pipeline, same points ==");
        await MeasureAsync("sqlite", folder => new SqliteDatabase(Paths(folder), new EmaLabOptions { DataDirectory = folder }));
        using var cluster = EmaLab.Dashboard.Tests.PostgresCluster.StartDurable();
        string? database = null;
        try
        {
            database = cluster.CreateDatabase();
            await MeasureAsync("postgres", _ => new PostgresDatabase(database));
        }
        finally
        {
            if (database is not null) cluster.DropDatabase(database);
        }
        Console.WriteLine();
    }

    static DataPaths Paths(string folder) =>
        new(Options.Create(new EmaLabOptions { DataDirectory = folder }), new HostingEnvironment { ContentRootPath = folder });

    static async Task MeasureAsync(string name, Func<string, EmaLabDatabase> open)
    {
        var folder = Directory.CreateTempSubdirectory("emalab-bench-").FullName;
        var store = open(folder);
        try
        {
            var options = Options.Create(new EmaLabOptions { DataDirectory = folder });
            var paths = Paths(folder);
            long runId;
            await using (var db = store.CreateContext())
            {
                await db.Database.MigrateAsync();
                await store.PrepareAsync(db, CancellationToken.None);
                var run = new Run { Name = "bench", Uuid = Run.NewUuid(), SpecJson = new RunSpec().ToJson(), CreatedAt = DateTimeOffset.UtcNow };
                db.Runs.Add(run);
                await db.SaveChangesAsync();
                runId = run.Id;
            }

            var versions = new MetricVersions();
            var pipeline = new MetricPipeline(new RunEventHub(), versions, store, new BundleCleaner(paths, NullLogger<BundleCleaner>.Instance), options, NullLogger<MetricPipeline>.Instance);
            await pipeline.StartAsync(CancellationToken.None);
            var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            var clock = Stopwatch.StartNew();
            // One training-loss series of 1M steps, as a long run would write it (from one producer thread).
            await Task.Factory.StartNew(() =>
            {
                for (var step = 1; step <= Points; step++)
                    pipeline.WriteMetric(runId, new MetricPoint("", "raw", MetricKeys.TrainLoss, step, Math.Exp(-step / 2e5) + 0.01 * Math.Sin(step)));
            }, TaskCreationOptions.LongRunning);
            await pipeline.FlushAsync();
            var seconds = clock.Elapsed.TotalSeconds;
            var cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds;
            await pipeline.StopAsync(CancellationToken.None);
            Console.WriteLine($"{name}: ingestion {Points:N0} points in {seconds:F2} s = {Points / seconds:N0} points/s, {cpu / Points * 1e6:F1} µs CPU/point in this process (batches of {options.Value.Metrics.FlushRows} rows or {options.Value.Metrics.FlushIntervalMs} ms)");

            var times = new List<double>();
            MetricSeries? series = null;
            for (var i = 0; i < 7; i++)
            {
                // A fresh query object each time: its cache would answer the repeats without reading.
                var queries = new MetricQueries(store, versions);
                clock.Restart();
                series = queries.Read(runId, "raw", MetricKeys.TrainLoss, 2000);
                times.Add(clock.Elapsed.TotalMilliseconds);
            }
            times.Sort();
            Console.WriteLine($"{name}: read + downsample {series!.TotalPoints:N0} points to {series.Points.Count:N0} in {times[times.Count / 2]:F0} ms (median of 7; min {times[0]:F0} ms)");
            if (store is SqliteDatabase)
                Console.WriteLine($"{name}: database size {new FileInfo(paths.DatabasePath).Length / 1e6:F1} MB (+ WAL {new FileInfo(paths.DatabasePath + "-wal").Length / 1e6:F1} MB)");
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Npgsql.NpgsqlConnection.ClearAllPools();
            (store as IDisposable)?.Dispose();
            Directory.Delete(folder, recursive: true);
        }
    }
}
