using Microsoft.EntityFrameworkCore;

namespace EmaLab.Dashboard.Data;

public sealed class EmaLabDbContext(DbContextOptions<EmaLabDbContext> options) : DbContext(options)
{
    public DbSet<Run> Runs => Set<Run>();
    public DbSet<EmaTrack> Tracks => Set<EmaTrack>();
    public DbSet<Metric> Metrics => Set<Metric>();
    public DbSet<Checkpoint> Checkpoints => Set<Checkpoint>();
    public DbSet<RunLogEntry> RunLog => Set<RunLogEntry>();

    protected override void OnModelCreating(ModelBuilder model)
    {
        model.Entity<Run>(run =>
        {
            run.Property(r => r.Name).HasMaxLength(200);
            run.Property(r => r.Status).HasConversion(s => s.ToString().ToLowerInvariant(), s => Enum.Parse<RunStatus>(s, true)).HasMaxLength(16);
            run.HasIndex(r => r.Status);
            run.HasMany(r => r.Tracks).WithOne().HasForeignKey(t => t.RunId).OnDelete(DeleteBehavior.Cascade);
            run.HasMany<Metric>().WithOne().HasForeignKey(m => m.RunId).OnDelete(DeleteBehavior.Cascade);
            run.HasMany<Checkpoint>().WithOne().HasForeignKey(c => c.RunId).OnDelete(DeleteBehavior.Cascade);
            run.HasMany<RunLogEntry>().WithOne().HasForeignKey(l => l.RunId).OnDelete(DeleteBehavior.Cascade);
        });
        model.Entity<EmaTrack>(track =>
        {
            track.Property(t => t.Name).HasMaxLength(64);
            track.HasIndex(t => new { t.RunId, t.Name }).IsUnique();
        });
        model.Entity<Metric>(metric =>
        {
            // The primary key is also the index every chart query uses: one run, key and track in step order.
            metric.HasKey(m => new { m.RunId, m.Key, m.Track, m.Step });
            metric.Property(m => m.Track).HasMaxLength(64);
            metric.Property(m => m.Key).HasMaxLength(64);
        });
        model.Entity<Checkpoint>(checkpoint =>
        {
            checkpoint.HasIndex(c => new { c.RunId, c.Track, c.Step });
        });
        model.Entity<RunLogEntry>(log => log.HasIndex(l => new { l.RunId, l.Id }));
    }
}
