/**
 * Fake-but-plausible data for the sandbox upstreams: deterministic generators for forum interaction
 * counts, market screens, news items and LLM-written forum posts, over the stock list (`Stocks.ts`)
 * and the seeded PRNG (`Random.ts`), both re-exported here.
 *
 * Everything here is a pure function of (seed, id) so two sandbox runs with the same seed serve the
 * same numbers — benchmarks and demos are reproducible and tests can assert on exact values.
 */
import { between, hashString, intBetween, pick, type Prng, prngFor, round } from "./Random.js"
import { findStock, type Stock, stocks } from "./Stocks.js"

export * from "./Random.js"
export * from "./Stocks.js"

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
