using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace EmaLab.Dashboard.Data;

/// <summary>
/// The same entities on PostgreSQL. A type of its own because EF Core finds a context's migrations by its type: the
/// PostgreSQL set (Data/PostgresMigrations) lives beside the SQLite one and neither sees the other.
/// </summary>
public sealed class PostgresDbContext(DbContextOptions options) : EmaLabDbContext(options)
{
    /// <summary>timestamptz compares and orders natively: none of SQLite's text conventions.</summary>
    protected override void ConfigureConventions(ModelConfigurationBuilder conventions)
    {
    }

    protected override void OnModelCreating(ModelBuilder model)
    {
        base.OnModelCreating(model);
        // The metric key's text columns compare byte-wise ("C"), as SQLite's do: the same order of series on both
        // databases, and a key index that does not go through the locale's collation on every insert.
        model.Entity<Metric>(metric =>
        {
            metric.Property(m => m.Key).UseCollation("C");
            metric.Property(m => m.Track).UseCollation("C");
        });
        model.Entity<LatestMetric>(latest =>
        {
            latest.Property(m => m.Key).UseCollation("C");
            latest.Property(m => m.Track).UseCollation("C");
        });
    }

    // Retries on transient errors: a pooled connection that the server or a proxy ended (a restart, an idle cut)
    // fails its next command, and the request or the run that happened to draw it must not.
    public static DbContextOptions Options(string connectionString) =>
        new DbContextOptionsBuilder<PostgresDbContext>().UseNpgsql(connectionString, npgsql => npgsql.EnableRetryOnFailure()).Options;

    /// <summary>For <c>dotnet ef migrations add … --context PostgresDbContext</c>: adding a migration needs no server.</summary>
    public sealed class DesignTimeFactory : IDesignTimeDbContextFactory<PostgresDbContext>
    {
        public PostgresDbContext CreateDbContext(string[] args) => new(Options("Host=localhost;Database=emalab"));
    }
}
