/**
 * Fake-but-plausible data for the sandbox upstreams: a list of real Taiwanese listed stocks, a
 * seeded PRNG, and deterministic generators for forum interaction counts, market screens, news
 * items and LLM-written forum posts.
 *
 * Everything here is a pure function of (seed, id) so two sandbox runs with the same seed serve the
 * same numbers — benchmarks and demos are reproducible and tests can assert on exact values.
 */

// ---------------------------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------------------------

/** A PRNG returning floats in [0, 1). Stateful: each call advances it. */
export type Prng = () => number

/**
 * mulberry32: tiny, fast, and good enough for simulation. Not `Math.random` because runs must be
 * reproducible from a seed.
 */
export const mulberry32 = (seed: number): Prng => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** FNV-1a over the UTF-16 code units, mixed with the seed, so each id gets its own stream. */
export const hashString = (text: string, seed: number): number => {
  let h = (0x811c9dc5 ^ seed) >>> 0
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

/** A PRNG dedicated to one id (article, trigger key, query, prompt) under one sandbox seed. */
export const prngFor = (id: string, seed: number): Prng => mulberry32(hashString(id, seed))

/** An integer in [min, max], both inclusive. */
export const intBetween = (rng: Prng, min: number, max: number): number => min + Math.floor(rng() * (max - min + 1))

export const between = (rng: Prng, min: number, max: number): number => min + rng() * (max - min)

export const pick = <A>(rng: Prng, items: readonly [A, ...Array<A>]): A =>
  items[Math.floor(rng() * items.length)] ?? items[0]

export const round = (value: number, decimals: number): number => {
  const factor = 10 ** decimals
  return Math.round(value * factor) / factor
}

/**
 * One latency draw from a log-normal around `medianMs` (Box–Muller for the normal), with an
 * optional tail: with `tailProbability` the request takes `tailMs` instead — the rare very slow
 * call that timeouts and hedging exist for.
 */
export const lognormalMs = (
  rng: Prng,
  options: {
    readonly medianMs: number
    readonly sigma: number
    readonly tailProbability?: number
    readonly tailMs?: number
  }
): number => {
  const tailProbability = options.tailProbability ?? 0
  if (tailProbability > 0 && rng() < tailProbability) return options.tailMs ?? options.medianMs * 20
  // 1 - rng() is in (0, 1], so the log is finite.
  const z = Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng())
  return Math.max(0, options.medianMs * Math.exp(options.sigma * z))
}

// ---------------------------------------------------------------------------------------------
// Stocks
// ---------------------------------------------------------------------------------------------

export interface Stock {
  readonly code: string
  readonly name: string
  readonly sector: string
  /** A rough recent price level in TWD, only to make generated quotes look sane. */
  readonly basePrice: number
}

const stock = (code: string, name: string, sector: string, basePrice: number): Stock => ({
  code,
  name,
  sector,
  basePrice
})

/** Real listings; more than 50 so a screen with the maximum limit never repeats a stock. */
export const stocks: readonly [Stock, ...Array<Stock>] = [
  stock("2330", "台積電", "半導體", 1000),
  stock("2317", "鴻海", "電子代工", 180),
  stock("2454", "聯發科", "IC設計", 1300),
  stock("2308", "台達電", "電源管理", 400),
  stock("2412", "中華電", "電信", 130),
  stock("2881", "富邦金", "金融", 85),
  stock("2882", "國泰金", "金融", 65),
  stock("1301", "台塑", "塑化", 45),
  stock("2303", "聯電", "半導體", 45),
  stock("3711", "日月光投控", "封測", 150),
  stock("2891", "中信金", "金融", 45),
  stock("2002", "中鋼", "鋼鐵", 21),
  stock("1216", "統一", "食品", 75),
  stock("2886", "兆豐金", "金融", 40),
  stock("2884", "玉山金", "金融", 30),
  stock("3008", "大立光", "光學", 2300),
  stock("2357", "華碩", "品牌電腦", 600),
  stock("2382", "廣達", "AI伺服器", 280),
  stock("2395", "研華", "工業電腦", 380),
  stock("6505", "台塑化", "塑化", 40),
  stock("1303", "南亞", "塑化", 40),
  stock("1326", "台化", "塑化", 40),
  stock("2207", "和泰車", "汽車", 600),
  stock("2327", "國巨", "被動元件", 170),
  stock("2379", "瑞昱", "IC設計", 500),
  stock("2408", "南亞科", "記憶體", 50),
  stock("2474", "可成", "機殼", 200),
  stock("2603", "長榮", "航運", 200),
  stock("2609", "陽明", "航運", 60),
  stock("2615", "萬海", "航運", 80),
  stock("2880", "華南金", "金融", 30),
  stock("2885", "元大金", "金融", 35),
  stock("2890", "永豐金", "金融", 25),
  stock("2892", "第一金", "金融", 28),
  stock("2912", "統一超", "零售", 260),
  stock("3034", "聯詠", "IC設計", 450),
  stock("3045", "台灣大", "電信", 110),
  stock("4904", "遠傳", "電信", 85),
  stock("4938", "和碩", "電子代工", 90),
  stock("5880", "合庫金", "金融", 27),
  stock("6669", "緯穎", "AI伺服器", 2500),
  stock("2301", "光寶科", "電源管理", 110),
  stock("2345", "智邦", "網通", 700),
  stock("3231", "緯創", "AI伺服器", 110),
  stock("2356", "英業達", "電子代工", 45),
  stock("1101", "台泥", "水泥", 30),
  stock("1102", "亞泥", "水泥", 40),
  stock("2105", "正新", "橡膠", 40),
  stock("3037", "欣興", "PCB", 150),
  stock("2376", "技嘉", "品牌電腦", 280),
  stock("2377", "微星", "品牌電腦", 150),
  stock("3017", "奇鋐", "散熱", 700),
  stock("2449", "京元電子", "封測", 110),
  stock("3661", "世芯-KY", "IC設計", 2500),
  stock("1590", "亞德客-KY", "機械", 1000)
]

const byCode = new Map(stocks.map((s) => [s.code, s] as const))

export const stockByCode = (code: string): Stock | undefined => byCode.get(code)

/**
 * What a prompt is about: a known stock (found by 4-digit code first, then by name), else a bare
 * 4-digit code we don't know, else nothing.
 */
export type StockMention =
  | { readonly _tag: "Known"; readonly stock: Stock }
  | { readonly _tag: "UnknownCode"; readonly code: string }
  | { readonly _tag: "None" }

export const findStock = (text: string): StockMention => {
  // Lookarounds instead of \b: CJK characters are non-word characters, and a 4-digit run inside a
  // longer number (a date, a price) is not a stock code.
  const codes = Array.from(text.matchAll(/(?<!\d)\d{4}(?!\d)/g), (m) => m[0])
  for (const code of codes) {
    const known = byCode.get(code)
    if (known !== undefined) return { _tag: "Known", stock: known }
  }
  // Longest name first so "南亞科" is not reported as "南亞".
  const byName = [...stocks].sort((a, b) => b.name.length - a.name.length).find((s) => text.includes(s.name))
  if (byName !== undefined) return { _tag: "Known", stock: byName }
  const first = codes[0]
  return first === undefined ? { _tag: "None" } : { _tag: "UnknownCode", code: first }
}

// ---------------------------------------------------------------------------------------------
// Forum interactions
// ---------------------------------------------------------------------------------------------

export interface Interactions {
  readonly views: number
  readonly likes: number
  readonly comments: number
  readonly shares: number
  readonly engagementRate: number
}

export const interactions = (articleId: string, seed: number): Interactions => {
  const rng = prngFor(`interactions:${articleId}`, seed)
  const views = intBetween(rng, 100, 50_000)
  const likes = intBetween(rng, 0, Math.floor(views / 5))
  const comments = intBetween(rng, 0, Math.floor(likes / 2))
  const shares = intBetween(rng, 0, Math.floor(likes / 3))
  return { views, likes, comments, shares, engagementRate: round((likes + comments + shares) / views, 4) }
}

// ---------------------------------------------------------------------------------------------
// Market screens
// ---------------------------------------------------------------------------------------------

export interface ScreenedStock {
  readonly code: string
  readonly name: string
  readonly price: number
  readonly changePercent: number
  readonly volume: number
}

/** The day's move for a trigger; unknown triggers move anywhere within ±5 %. */
const changeFor = (triggerKey: string, rng: Prng): number => {
  switch (triggerKey) {
    case "limit_up":
      return between(rng, 9.5, 10)
    case "limit_down":
      return -between(rng, 9.5, 10)
    case "gap_up":
      return between(rng, 2, 7)
    case "gap_down":
      return -between(rng, 2, 7)
    case "volume_surge":
      return between(rng, -3, 6)
    default:
      return between(rng, -5, 5)
  }
}

export const screen = (triggerKey: string, limit: number, seed: number): ReadonlyArray<ScreenedStock> => {
  const rng = prngFor(`screen:${triggerKey}`, seed)
  // Partial Fisher–Yates: the first `count` slots become a uniform sample without repeats.
  const pool = [...stocks]
  const count = Math.min(limit, pool.length)
  const out: Array<ScreenedStock> = []
  for (let i = 0; i < count; i++) {
    const j = intBetween(rng, i, pool.length - 1)
    const chosen = pool[j]
    const current = pool[i]
    if (chosen === undefined || current === undefined) break
    pool[j] = current
    pool[i] = chosen
    const previousClose = chosen.basePrice * between(rng, 0.85, 1.15)
    // Rounded toward zero so a limit-up draw of 9.5 never reports 9.49.
    const changePercent = Math.trunc(changeFor(triggerKey, rng) * 100) / 100
    const baseVolume = intBetween(rng, 500, 80_000)
    const volume = triggerKey === "volume_surge" ? Math.round(baseVolume * between(rng, 3, 10)) : baseVolume
    out.push({
      code: chosen.code,
      name: chosen.name,
      price: round(previousClose * (1 + changePercent / 100), 2),
      changePercent,
      volume
    })
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// News
// ---------------------------------------------------------------------------------------------

export interface NewsItem {
  readonly title: string
  readonly link: string
  readonly snippet: string
  readonly date: string
  readonly source: string
}

const headlines: readonly [(q: string) => string, ...Array<(q: string) => string>] = [
  (q) => `${q}最新動態：法人看好後市表現`,
  (q) => `${q}盤中走勢強勁，成交量明顯放大`,
  (q) => `外資調整${q}目標價，市場關注後續發展`,
  (q) => `${q}法說會重點整理：營收展望與毛利率`,
  (q) => `${q}相關概念股受惠，投資人積極追捧`,
  (q) => `分析師解讀${q}：短線震盪、長線看俏`,
  (q) => `${q}遭外資連續賣超，股價短線承壓`,
  (q) => `${q}月營收公布，年增幅度優於預期`,
  (q) => `${q}供應鏈傳出新訂單，下半年能見度提升`,
  (q) => `投信作帳行情升溫，${q}成為關注焦點`
]

const snippets: readonly [(q: string) => string, ...Array<(q: string) => string>] = [
  (q) => `根據最新消息，${q}近期基本面持續改善，市場預估本季營收將維持成長動能。`,
  (q) => `${q}今日盤中震盪，法人指出短線仍需觀察成交量是否能有效放大。`,
  (q) => `多家券商針對${q}發布最新報告，普遍認為產業景氣已走出谷底。`,
  (q) => `投資人關注${q}後續發展，分析師提醒留意國際情勢與匯率變化。`,
  (q) => `${q}受惠於終端需求回溫，供應鏈業者對明年展望轉趨樂觀。`
]

const sources: readonly [string, ...Array<string>] = [
  "經濟日報",
  "工商時報",
  "鉅亨網",
  "MoneyDJ理財網",
  "自由財經",
  "聯合新聞網"
]

export const news = (query: string, count: number, seed: number): ReadonlyArray<NewsItem> => {
  const rng = prngFor(`news:${query}`, seed)
  const slug = hashString(query, seed).toString(36)
  const out: Array<NewsItem> = []
  for (let i = 0; i < count; i++) {
    const hours = intBetween(rng, 1, 72)
    out.push({
      title: pick(rng, headlines)(query),
      link: `https://news.example.com/articles/${slug}-${i + 1}`,
      snippet: pick(rng, snippets)(query),
      // Serper reports relative dates.
      date: hours < 24 ? `${hours} hours ago` : `${Math.floor(hours / 24)} days ago`,
      source: pick(rng, sources)
    })
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// LLM forum posts
// ---------------------------------------------------------------------------------------------

const openers: readonly [(s: Stock) => string, ...Array<(s: Stock) => string>] = [
  (s) => `${s.name}(${s.code})今天的走勢真的很有看頭，盤中量能明顯放大。`,
  (s) => `最近一直在追蹤${s.name}(${s.code})，${s.sector}族群的動能看起來正在回溫。`,
  (s) => `${s.code} ${s.name}這波拉回其實不用太緊張，基本面並沒有改變。`,
  (s) => `大家有注意到${s.name}(${s.code})嗎？法人最近連續幾天站在買方。`
]

const middles: readonly [string, ...Array<string>] = [
  "從技術面來看，季線附近的支撐相當明確，短線震盪難免。",
  "外資報告普遍上修目標價，市場對下半年的營收成長有信心。",
  "不過追高要小心，留意成交量能否持續跟上。",
  "產業景氣正在復甦，訂單能見度也比上一季更清楚。"
]

const closers: readonly [string, ...Array<string>] = [
  "我的策略是分批布局、設好停損，大家怎麼看？",
  "個人意見僅供參考，投資前請自行做好功課。",
  "歡迎在下面留言分享你們的看法！"
]

const genericOpeners: readonly [string, ...Array<string>] = [
  "今天台股整體氣氛偏多，電子權值股撐盤意味濃厚。",
  "最近大盤在高檔震盪，資金明顯在各族群之間輪動。",
  "盤面上中小型股表現活潑，短線交易熱度不減。"
]

/**
 * A 2–4 sentence Traditional-Chinese forum post about whatever `prompt` mentions, deterministic per
 * (prompt, seed): opener, zero to two middle sentences, closer.
 */
export const forumPost = (prompt: string, seed: number): string => {
  const rng = prngFor(`post:${prompt}`, seed)
  const mention = findStock(prompt)
  const opener =
    mention._tag === "Known"
      ? pick(rng, openers)(mention.stock)
      : mention._tag === "UnknownCode"
        ? `最近有人問到${mention.code}這檔，籌碼面的變化值得多留意。`
        : pick(rng, genericOpeners)
  const middleCount = intBetween(rng, 0, 2)
  const middle: Array<string> = []
  const pool = [...middles]
  for (let i = 0; i < middleCount && pool.length > 0; i++) {
    middle.push(...pool.splice(Math.floor(rng() * pool.length), 1))
  }
  return [opener, ...middle, pick(rng, closers)].join("")
}

/** The rough token count the fake LLM reports: about two characters per token. */
export const tokenCount = (text: string): number => Math.ceil(text.length / 2)
