using System.Globalization;
using Microsoft.AspNetCore.Identity.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Data;

/// <summary>EMA Lab's entities, accounts included (Identity's tables). This type carries the SQLite migrations;
/// <see cref="PostgresDbContext"/> the PostgreSQL ones.</summary>
public class EmaLabDbContext(DbContextOptions options) : IdentityDbContext<EmaLabUser>(options)
{
    public DbSet<Run> Runs => Set<Run>();
    public DbSet<EmaTrack> Tracks => Set<EmaTrack>();
    public DbSet<Metric> Metrics => Set<Metric>();
    public DbSet<LatestMetric> LatestMetrics => Set<LatestMetric>();
    public DbSet<Checkpoint> Checkpoints => Set<Checkpoint>();
    public DbSet<RunLogEntry> RunLog => Set<RunLogEntry>();
    public DbSet<Experiment> Experiments => Set<Experiment>();
    public DbSet<RunParam> Params => Set<RunParam>();
    public DbSet<RunTag> RunTags => Set<RunTag>();
    public DbSet<ClientMetricKey> ClientMetricKeys => Set<ClientMetricKey>();
    public DbSet<LoggedModel> LoggedModels => Set<LoggedModel>();
    public DbSet<LoggedModelMetric> LoggedModelMetrics => Set<LoggedModelMetric>();
    public DbSet<RunInput> RunInputs => Set<RunInput>();
    public DbSet<RunOutput> RunOutputs => Set<RunOutput>();
    public DbSet<PersonalToken> PersonalTokens => Set<PersonalToken>();
    public DbSet<ExperimentPermission> ExperimentPermissions => Set<ExperimentPermission>();
    public DbSet<AuditEntry> AuditEntries => Set<AuditEntry>();
    public DbSet<RegisteredModel> RegisteredModels => Set<RegisteredModel>();
    public DbSet<ModelVersion> ModelVersions => Set<ModelVersion>();
    public DbSet<RegisteredModelAlias> RegisteredModelAliases => Set<RegisteredModelAlias>();
    public DbSet<RegisteredModelPermission> RegisteredModelPermissions => Set<RegisteredModelPermission>();

    /// <summary>
    /// SQLite has no time type, and the text EF writes for a <see cref="DateTimeOffset"/> by default cannot be compared
    /// or ordered in SQL. Written as UTC with seven fractional digits it sorts as the instants do, so the tracking API
    /// filters and orders runs by time in the database (PostgreSQL has its own type and does not take this).
    /// </summary>
    protected override void ConfigureConventions(ModelConfigurationBuilder conventions) =>
        conventions.Properties<DateTimeOffset>().HaveConversion<SortableUtcText>();

    /// <summary><c>2026-12-02 05:27:08.1234567+00:00</c>. Text EF wrote before (fewer digits) still reads, and sorts the same.</summary>
    public sealed class SortableUtcText() : ValueConverter<DateTimeOffset, string>(
        at => at.UtcDateTime.ToString(Format, CultureInfo.InvariantCulture),
        text => DateTimeOffset.Parse(text, CultureInfo.InvariantCulture))
    {
        public const string Format = "yyyy'-'MM'-'dd' 'HH':'mm':'ss'.'fffffff'+00:00'";
    }

    protected override void OnModelCreating(ModelBuilder model)
    {
        base.OnModelCreating(model); // Identity's users, roles, claims, logins and tokens
        model.Entity<PersonalToken>(token =>
        {
            token.Property(t => t.UserId).HasMaxLength(450);
            token.Property(t => t.Name).HasMaxLength(PersonalToken.MaxNameLength);
            token.Property(t => t.Hash).HasMaxLength(64);
            token.Property(t => t.Prefix).HasMaxLength(32);
            token.HasIndex(t => t.Hash).IsUnique();
            token.HasIndex(t => t.UserId);
            token.HasOne<EmaLabUser>().WithMany().HasForeignKey(t => t.UserId).OnDelete(DeleteBehavior.Cascade);
        });
        model.Entity<AuditEntry>(entry =>
        {
            entry.Property(e => e.Actor).HasMaxLength(256);
            entry.Property(e => e.Action).HasMaxLength(64);
            entry.Property(e => e.Target).HasMaxLength(AuditEntry.MaxTextLength);
            entry.Property(e => e.Detail).HasMaxLength(AuditEntry.MaxTextLength);
            entry.Property(e => e.Address).HasMaxLength(64);
            entry.HasIndex(e => e.At);
            entry.HasIndex(e => new { e.Actor, e.At });
        });
        model.Entity<ExperimentPermission>(permission =>
        {
            permission.HasKey(p => new { p.ExperimentId, p.UserId });
            permission.Property(p => p.UserId).HasMaxLength(450);
            permission.Property(p => p.Permission).HasConversion(p => PermissionNames.Of(p), p => Parse(p)).HasMaxLength(16);
            permission.HasIndex(p => p.UserId);
            permission.HasOne<EmaLabUser>().WithMany().HasForeignKey(p => p.UserId).OnDelete(DeleteBehavior.Cascade);
            permission.HasOne<Experiment>().WithMany().HasForeignKey(p => p.ExperimentId).OnDelete(DeleteBehavior.Cascade);
        });
        ConfigureRegistry(model);
        model.Entity<Run>(run =>
        {
            run.Property(r => r.Name).HasMaxLength(200);
            run.Property(r => r.Status).HasConversion(s => WireNames.Of(s), s => WireNames.Parse<RunStatus>(s)).HasMaxLength(16);
            run.HasIndex(r => r.Status);
            run.Property(r => r.Origin).HasConversion(o => WireNames.Of(o), o => WireNames.Parse<RunOrigin>(o)).HasMaxLength(16);
            run.Property(r => r.Uuid).HasMaxLength(32);
            run.Property(r => r.Attempt).HasMaxLength(32);
            run.Property(r => r.DispatchId).HasMaxLength(32);
            run.Property(r => r.JobId).HasMaxLength(64);
            run.HasIndex(r => r.Uuid).IsUnique();
            run.HasIndex(r => r.ExperimentId);
            run.HasOne<Experiment>().WithMany().HasForeignKey(r => r.ExperimentId).OnDelete(DeleteBehavior.Restrict);
            run.HasMany<RunParam>().WithOne().HasForeignKey(p => p.RunId).OnDelete(DeleteBehavior.Cascade);
            run.HasMany(r => r.Tags).WithOne().HasForeignKey(t => t.RunId).OnDelete(DeleteBehavior.Cascade);
            run.HasMany<ClientMetricKey>().WithOne().HasForeignKey(k => k.RunId).OnDelete(DeleteBehavior.Cascade);
            run.HasMany(r => r.Tracks).WithOne().HasForeignKey(t => t.RunId).OnDelete(DeleteBehavior.Cascade);
            run.HasMany<Metric>().WithOne().HasForeignKey(m => m.RunId).OnDelete(DeleteBehavior.Cascade);
            run.HasMany<LatestMetric>().WithOne().HasForeignKey(m => m.RunId).OnDelete(DeleteBehavior.Cascade);
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
            metric.HasKey(m => new { m.RunId, m.Key, m.Track, m.Step, m.WallTimeMs });
            metric.Property(m => m.Track).HasMaxLength(64);
            metric.Property(m => m.Key).HasMaxLength(250);
        });
        model.Entity<LatestMetric>(latest =>
        {
            latest.HasKey(m => new { m.RunId, m.Key, m.Track });
            latest.Property(m => m.Track).HasMaxLength(64);
            latest.Property(m => m.Key).HasMaxLength(250);
        });
        model.Entity<Experiment>(experiment =>
        {
            experiment.Property(e => e.Name).HasMaxLength(Experiment.MaxNameLength);
            experiment.HasIndex(e => e.Name).IsUnique();
            experiment.HasMany(e => e.Tags).WithOne().HasForeignKey(t => t.ExperimentId).OnDelete(DeleteBehavior.Cascade);
        });
        model.Entity<ExperimentTag>(tag =>
        {
            tag.HasKey(t => new { t.ExperimentId, t.Key });
            tag.Property(t => t.Key).HasMaxLength(250);
            tag.Property(t => t.Value).HasMaxLength(5000);
        });
        model.Entity<RunParam>(param =>
        {
            param.HasKey(p => new { p.RunId, p.Key });
            param.Property(p => p.Key).HasMaxLength(250);
            param.Property(p => p.Value).HasMaxLength(6000);
        });
        model.Entity<RunTag>(tag =>
        {
            tag.HasKey(t => new { t.RunId, t.Key });
            tag.Property(t => t.Key).HasMaxLength(250);
            tag.Property(t => t.Value).HasMaxLength(8000);
        });
        model.Entity<ClientMetricKey>(key =>
        {
            key.HasKey(k => new { k.RunId, k.LoggedKey });
            key.Property(k => k.LoggedKey).HasMaxLength(250);
            key.Property(k => k.Track).HasMaxLength(64);
            key.Property(k => k.Key).HasMaxLength(250);
        });
        model.Entity<LoggedModel>(logged =>
        {
            logged.Property(m => m.Id).HasMaxLength(34);
            logged.Property(m => m.Name).HasMaxLength(LoggedModel.MaxNameLength);
            logged.Property(m => m.ModelType).HasMaxLength(250);
            logged.HasIndex(m => m.ExperimentId);
            logged.HasIndex(m => m.SourceRunId);
            logged.Property(m => m.SourceRunUuid).HasMaxLength(64);
            logged.HasOne<Experiment>().WithMany().HasForeignKey(m => m.ExperimentId).OnDelete(DeleteBehavior.Restrict);
            logged.HasOne<Run>().WithMany().HasForeignKey(m => m.SourceRunId).OnDelete(DeleteBehavior.Cascade);
            logged.HasMany(m => m.Tags).WithOne().HasForeignKey(t => t.ModelId).OnDelete(DeleteBehavior.Cascade);
            logged.HasMany(m => m.Params).WithOne().HasForeignKey(p => p.ModelId).OnDelete(DeleteBehavior.Cascade);
            logged.HasMany(m => m.Metrics).WithOne().HasForeignKey(p => p.ModelId).OnDelete(DeleteBehavior.Cascade);
        });
        model.Entity<LoggedModelTag>(tag =>
        {
            tag.HasKey(t => new { t.ModelId, t.Key });
            tag.Property(t => t.Key).HasMaxLength(250);
            tag.Property(t => t.Value).HasMaxLength(8000);
        });
        model.Entity<LoggedModelParam>(param =>
        {
            param.HasKey(p => new { p.ModelId, p.Key });
            param.Property(p => p.Key).HasMaxLength(250);
            param.Property(p => p.Value).HasMaxLength(6000);
        });
        model.Entity<LoggedModelMetric>(metric =>
        {
            metric.Property(m => m.Key).HasMaxLength(250);
            metric.HasIndex(m => new { m.ModelId, m.Key, m.Step });
        });
        model.Entity<RunInput>(input =>
        {
            input.HasIndex(i => i.RunId);
            input.HasOne<Run>().WithMany().HasForeignKey(i => i.RunId).OnDelete(DeleteBehavior.Cascade);
        });
        model.Entity<RunOutput>(output =>
        {
            output.HasKey(o => new { o.RunId, o.ModelId, o.Step });
            output.HasOne<Run>().WithMany().HasForeignKey(o => o.RunId).OnDelete(DeleteBehavior.Cascade);
        });
        model.Entity<Checkpoint>(checkpoint =>
        {
            checkpoint.HasIndex(c => new { c.RunId, c.Track, c.Step });
        });
        model.Entity<RunLogEntry>(log => log.HasIndex(l => new { l.RunId, l.Id }));
    }

    /// <summary>The model registry's tables, with MLflow's column limits (mlflow/store/model_registry/dbmodels/models.py).</summary>
    static void ConfigureRegistry(ModelBuilder model)
    {
        model.Entity<RegisteredModel>(registered =>
        {
            registered.Property(m => m.Name).HasMaxLength(RegisteredModel.MaxNameLength);
            registered.Property(m => m.Description).HasMaxLength(5000);
            registered.Property(m => m.CreatedBy).HasMaxLength(256);
            registered.HasIndex(m => m.Name).IsUnique();
            registered.HasMany(m => m.Tags).WithOne().HasForeignKey(t => t.RegisteredModelId).OnDelete(DeleteBehavior.Cascade);
            registered.HasMany(m => m.Aliases).WithOne().HasForeignKey(a => a.RegisteredModelId).OnDelete(DeleteBehavior.Cascade);
            registered.HasMany(m => m.Versions).WithOne().HasForeignKey(v => v.RegisteredModelId).OnDelete(DeleteBehavior.Cascade);
        });
        model.Entity<RegisteredModelTag>(tag =>
        {
            tag.HasKey(t => new { t.RegisteredModelId, t.Key });
            tag.Property(t => t.Key).HasMaxLength(250);
        });
        model.Entity<RegisteredModelAlias>(alias =>
        {
            alias.HasKey(a => new { a.RegisteredModelId, a.Alias });
            alias.Property(a => a.Alias).HasMaxLength(RegisteredModelAlias.MaxLength);
        });
        model.Entity<ModelVersion>(version =>
        {
            version.HasIndex(v => new { v.RegisteredModelId, v.Version }).IsUnique();
            version.Property(v => v.Description).HasMaxLength(5000);
            version.Property(v => v.UserId).HasMaxLength(256);
            version.Property(v => v.CurrentStage).HasMaxLength(20);
            version.Property(v => v.Source).HasMaxLength(500);
            version.Property(v => v.StorageLocation).HasMaxLength(500);
            version.Property(v => v.RunUuid).HasMaxLength(32);
            version.Property(v => v.RunLink).HasMaxLength(500);
            version.Property(v => v.Status).HasMaxLength(20);
            version.Property(v => v.StatusMessage).HasMaxLength(500);
            version.Property(v => v.ModelId).HasMaxLength(34);
            version.Property(v => v.Track).HasMaxLength(64);
            version.HasIndex(v => v.RunUuid);
            version.HasIndex(v => v.ModelId);
            version.HasMany(v => v.Tags).WithOne().HasForeignKey(t => t.ModelVersionId).OnDelete(DeleteBehavior.Cascade);
        });
        model.Entity<ModelVersionTag>(tag =>
        {
            tag.HasKey(t => new { t.ModelVersionId, t.Key });
            tag.Property(t => t.Key).HasMaxLength(250);
        });
        model.Entity<RegisteredModelPermission>(permission =>
        {
            permission.HasKey(p => new { p.RegisteredModelId, p.UserId });
            permission.Property(p => p.UserId).HasMaxLength(450);
            permission.Property(p => p.Permission).HasConversion(p => PermissionNames.Of(p), p => Parse(p)).HasMaxLength(16);
            permission.HasIndex(p => p.UserId);
            permission.HasOne<EmaLabUser>().WithMany().HasForeignKey(p => p.UserId).OnDelete(DeleteBehavior.Cascade);
            permission.HasOne<RegisteredModel>().WithMany().HasForeignKey(p => p.RegisteredModelId).OnDelete(DeleteBehavior.Cascade);
        });
    }

    static ExperimentPermissionLevel Parse(string name) =>
        PermissionNames.TryParse(name, out var level) ? level : ExperimentPermissionLevel.NoPermissions;

    /// <summary>
    /// For <c>dotnet ef migrations add … --context EmaLabDbContext</c> (the SQLite set); without it the tools would take
    /// <see cref="PostgresDbContext"/>'s factory, whose context is an EmaLabDbContext too.
    /// </summary>
    public sealed class SqliteDesignTimeFactory : IDesignTimeDbContextFactory<EmaLabDbContext>
    {
        public EmaLabDbContext CreateDbContext(string[] args) =>
            new(new DbContextOptionsBuilder<EmaLabDbContext>().UseSqlite("Data Source=design-time.db").Options);
    }
}
