using EmaLab.Dashboard.Components.Shared;
using EmaLab.TrainingEngine.Averaging;

namespace EmaLab.Dashboard.Tests;

public class TrackPaletteTests
{
    [Fact]
    public void A_runs_tracks_take_the_palette_in_display_order_and_raw_is_grey()
    {
        var palette = TrackPalette.Of(["raw", "ema-0.999-tensorflow", "ema-0.998-timm", "swa-from-500"]);
        Assert.Equal(new TrackStyle(TrackColors.Raw, null), palette["raw"]);
        Assert.Equal(TrackColors.Palette[0], palette["ema-0.999-tensorflow"].Color);
        Assert.Equal(TrackColors.Palette[1], palette["ema-0.998-timm"].Color);
        Assert.Equal(TrackColors.Palette[2], palette["swa-from-500"].Color);
        Assert.All(["ema-0.999-tensorflow", "ema-0.998-timm", "swa-from-500"], t => Assert.Null(palette[t].Dash));
    }

    [Fact]
    public void Twelve_tracks_get_twelve_colours_and_more_repeat_them_dotted()
    {
        var tracks = Enumerable.Range(1, 14).Select(i => $"ema-0.{i:00}").ToList();
        var palette = TrackPalette.Of(["raw", .. tracks]);
        Assert.Equal(12, tracks.Take(12).Select(t => palette[t].Color).Distinct().Count());
        Assert.DoesNotContain(TrackColors.Raw, tracks.Select(t => palette[t].Color));
        Assert.Equal(palette[tracks[0]].Color, palette[tracks[12]].Color);
        Assert.Equal("dot", palette[tracks[12]].Dash);
    }

    [Fact]
    public void A_low_precision_twin_is_dashed_in_its_float32_tracks_colour()
    {
        var f32 = new EmaRule { Name = "ema-0.99-averaged-model", Preset = EmaPresets.AveragedModel, Decay = 0.99 };
        var bf16 = f32 with { Name = "ema-0.99-averaged-model-bf16", Dtype = EmaDtype.BFloat16 };
        var other = new EmaRule { Name = "ema-0.995-ema-pytorch", Preset = EmaPresets.EmaPytorch, Decay = 0.995 };
        // The twin listed first still takes its float32 track's colour; it does not use one up.
        var palette = TrackPalette.OfRules([bf16, f32, other]);
        Assert.Equal(new TrackStyle(palette[f32.Name].Color, TrackPalette.TwinDash), palette[bf16.Name]);
        Assert.NotEqual(palette[f32.Name].Color, palette[other.Name].Color);

        // Without the engine's rules (a client's run), the engine's naming says which track is a twin.
        var byName = TrackPalette.Of(["raw", "ema-0.99", "ema-0.99-bf16", "ema-0.999-fp16"]);
        Assert.Equal(new TrackStyle(byName["ema-0.99"].Color, TrackPalette.TwinDash), byName["ema-0.99-bf16"]);
        Assert.Null(byName["ema-0.999-fp16"].Dash);
    }

    [Fact]
    public void A_track_the_palette_was_not_built_with_gets_a_colour_by_its_name()
    {
        var palette = TrackPalette.Of(["raw", "ema-0.99"]);
        Assert.Equal(palette["ema-0.9-late"], TrackPalette.Of([])["ema-0.9-late"]);
        Assert.Contains(palette["ema-0.9-late"].Color, TrackColors.Palette);
        Assert.Equal(TrackColors.Raw, TrackPalette.Of([])["raw"].Color);
    }

    [Fact]
    public void A_dashed_tracks_swatch_is_striped()
    {
        Assert.Equal("background:#2563eb", new TrackStyle("#2563eb", null).SwatchCss);
        Assert.Contains("repeating-linear-gradient", new TrackStyle("#2563eb", "dash").SwatchCss);
    }

    // What the palette's comment claims, measured: every colour reads on both cards, and all colours and raw's grey
    // stay apart (CIEDE2000) in normal vision and for each of the three colour-vision deficiencies.
    static readonly string[] Cards = ["#ffffff", "#171c27"];

    [Fact]
    public void Every_colour_has_a_contrast_of_2_5_on_the_light_and_the_dark_card()
    {
        foreach (var color in TrackColors.Palette.Append(TrackColors.Raw))
            foreach (var card in Cards)
                Assert.True(Colour.Contrast(color, card) >= 2.5, $"{color} on {card}: {Colour.Contrast(color, card):F2}");
    }

    [Theory]
    [InlineData(6, 18, 11.5)]   // the colours a run of up to six tracks gets: far apart for everyone
    [InlineData(12, 16, 7)] // all twelve: apart at a glance in normal vision, still apart for colour-blind readers
    public void The_first_colours_stay_apart_in_every_kind_of_colour_vision(int count, double normal, double deficient)
    {
        var colours = TrackColors.Palette.Take(count).Prepend(TrackColors.Raw).ToList();
        foreach (var (a, b) in colours.SelectMany((a, i) => colours.Skip(i + 1).Select(b => (a, b))))
        {
            Assert.True(Colour.DeltaE2000(Colour.Lab(a), Colour.Lab(b)) >= normal, $"{a} and {b} in normal vision");
            foreach (var (name, simulation) in Colour.Deficiencies)
                Assert.True(Colour.DeltaE2000(Colour.Lab(a, simulation), Colour.Lab(b, simulation)) >= deficient, $"{a} and {b} with {name}");
        }
    }

    [Fact]
    public void The_colour_measures_agree_with_published_values()
    {
        // Sharma, Wu & Dalal (2005), the CIEDE2000 test data: pairs 1 and 17.
        Assert.Equal(2.0425, Colour.DeltaE2000((50, 2.6772, -79.7751), (50, 0, -82.7485)), 4);
        Assert.Equal(27.1492, Colour.DeltaE2000((50, 2.5, 0), (73, 25, -18)), 4);
        // WCAG: black on white is 21:1.
        Assert.Equal(21, Colour.Contrast("#000000", "#ffffff"), 6);
        // Deuteranopia makes pure red and a dark olive nearly the same (the classic confusion line).
        var red = Colour.Lab("#ff0000", Colour.Deficiencies["deuteranopia"]);
        var olive = Colour.Lab("#a09000", Colour.Deficiencies["deuteranopia"]);
        Assert.True(Colour.DeltaE2000(red, olive) < 3, "red and olive should be close for a deuteranope");
    }

    /// <summary>sRGB → CIELab (D65), CIEDE2000, WCAG contrast and Machado et al. (2009) simulation at severity 1.</summary>
    static class Colour
    {
        public static readonly Dictionary<string, double[,]> Deficiencies = new()
        {
            ["protanopia"] = new[,] { { 0.152286, 1.052583, -0.204868 }, { 0.114503, 0.786281, 0.099216 }, { -0.003882, -0.048116, 1.051998 } },
            ["deuteranopia"] = new[,] { { 0.367322, 0.860646, -0.227968 }, { 0.280085, 0.672501, 0.047413 }, { -0.011820, 0.042940, 0.968881 } },
            ["tritanopia"] = new[,] { { 1.255528, -0.076749, -0.178779 }, { -0.078411, 0.930809, 0.147602 }, { 0.004733, 0.691367, 0.303900 } },
        };

        static double[] Linear(string hex) => Convert.FromHexString(hex[1..]).Select(b => b / 255.0)
            .Select(c => c <= 0.04045 ? c / 12.92 : Math.Pow((c + 0.055) / 1.055, 2.4)).ToArray();

        static double Luminance(double[] rgb) => 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];

        public static double Contrast(string a, string b)
        {
            var (la, lb) = (Luminance(Linear(a)), Luminance(Linear(b)));
            return (Math.Max(la, lb) + 0.05) / (Math.Min(la, lb) + 0.05);
        }

        public static (double L, double A, double B) Lab(string hex, double[,]? simulation = null)
        {
            var rgb = Linear(hex);
            if (simulation is not null)
                rgb = Enumerable.Range(0, 3).Select(i => Math.Clamp(simulation[i, 0] * rgb[0] + simulation[i, 1] * rgb[1] + simulation[i, 2] * rgb[2], 0, 1)).ToArray();
            var x = (0.4124 * rgb[0] + 0.3576 * rgb[1] + 0.1805 * rgb[2]) / 0.95047;
            var y = Luminance(rgb);
            var z = (0.0193 * rgb[0] + 0.1192 * rgb[1] + 0.9505 * rgb[2]) / 1.08883;
            static double F(double t) => t > 216.0 / 24389 ? Math.Cbrt(t) : (24389.0 / 27 * t + 16) / 116;
            return (116 * F(y) - 16, 500 * (F(x) - F(y)), 200 * (F(y) - F(z)));
        }

        public static double DeltaE2000((double L, double A, double B) c1, (double L, double A, double B) c2)
        {
            static double Rad(double degrees) => degrees * Math.PI / 180;
            static double Hue(double b, double a) => (Math.Atan2(b, a) * 180 / Math.PI + 360) % 360;
            var meanC = (Math.Sqrt(c1.A * c1.A + c1.B * c1.B) + Math.Sqrt(c2.A * c2.A + c2.B * c2.B)) / 2;
            var g = 0.5 * (1 - Math.Sqrt(Math.Pow(meanC, 7) / (Math.Pow(meanC, 7) + Math.Pow(25, 7))));
            var (a1, a2) = ((1 + g) * c1.A, (1 + g) * c2.A);
            var (ch1, ch2) = (Math.Sqrt(a1 * a1 + c1.B * c1.B), Math.Sqrt(a2 * a2 + c2.B * c2.B));
            var (h1, h2) = (ch1 == 0 ? 0 : Hue(c1.B, a1), ch2 == 0 ? 0 : Hue(c2.B, a2));
            var dh = ch1 * ch2 == 0 ? 0 : h2 - h1 > 180 ? h2 - h1 - 360 : h2 - h1 < -180 ? h2 - h1 + 360 : h2 - h1;
            var dH = 2 * Math.Sqrt(ch1 * ch2) * Math.Sin(Rad(dh / 2));
            var (meanL, meanCp) = ((c1.L + c2.L) / 2, (ch1 + ch2) / 2);
            var meanH = ch1 * ch2 == 0 ? h1 + h2 : Math.Abs(h1 - h2) <= 180 ? (h1 + h2) / 2 : h1 + h2 < 360 ? (h1 + h2 + 360) / 2 : (h1 + h2 - 360) / 2;
            var t = 1 - 0.17 * Math.Cos(Rad(meanH - 30)) + 0.24 * Math.Cos(Rad(2 * meanH)) + 0.32 * Math.Cos(Rad(3 * meanH + 6)) - 0.20 * Math.Cos(Rad(4 * meanH - 63));
            var rc = 2 * Math.Sqrt(Math.Pow(meanCp, 7) / (Math.Pow(meanCp, 7) + Math.Pow(25, 7)));
            var rt = -Math.Sin(Rad(60 * Math.Exp(-Math.Pow((meanH - 275) / 25, 2)))) * rc;
            var sl = 1 + 0.015 * Math.Pow(meanL - 50, 2) / Math.Sqrt(20 + Math.Pow(meanL - 50, 2));
            var (sc, sh) = (1 + 0.045 * meanCp, 1 + 0.015 * meanCp * t);
            var (dl, dc, dhh) = ((c2.L - c1.L) / sl, (ch2 - ch1) / sc, dH / sh);
            return Math.Sqrt(dl * dl + dc * dc + dhh * dhh + rt * dc * dhh);
        }
    }
}
