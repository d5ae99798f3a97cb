using System.Text.RegularExpressions;

namespace EmaLab.TrainingEngine.Tests;

/// <summary>
/// The engine's folders depend on each other one way only: shared contracts, file formats, data, models and
/// optimizers at the bottom; averaging above the formats; diffusion (schedules, samplers, the Fréchet distance and its
/// reference network) above data, formats and models; training above those; checkpoints (bundles, export) on top.
/// </summary>
public class LayeringTests
{
    static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["Contracts"] = [],
        ["Formats"] = [],
        ["Data"] = [],
        ["Models"] = [],
        ["Optimization"] = [],
        ["Averaging"] = ["Formats"],
        ["Diffusion"] = ["Data", "Formats", "Models"],
        ["Training"] = ["Averaging", "Data", "Diffusion", "Models", "Optimization", "Formats"],
        ["Checkpoints"] = ["Averaging", "Data", "Formats", "Models", "Optimization", "Training"],
    };

    [Fact]
    public void Every_folder_uses_only_the_folders_below_it()
    {
        var engine = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../src/TrainingEngine"));
        Assert.True(Directory.Exists(engine), engine);
        var folders = Directory.GetDirectories(engine).Select(Path.GetFileName).Where(f => f is not ("bin" or "obj") && Directory.GetFiles(Path.Combine(engine, f!), "*.cs").Length > 0).ToList();
        Assert.Equal(Allowed.Keys.Order(), folders.Order());
        foreach (var folder in folders)
            foreach (var file in Directory.GetFiles(Path.Combine(engine, folder!), "*.cs"))
                foreach (Match use in Regex.Matches(File.ReadAllText(file), @"^using EmaLab\.TrainingEngine\.(\w+);", RegexOptions.Multiline))
                    Assert.True(Allowed[folder!].Contains(use.Groups[1].Value), $"{folder}/{Path.GetFileName(file)} uses {use.Groups[1].Value}");
    }
}
